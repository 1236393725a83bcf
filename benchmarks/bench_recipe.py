"""Screening the multilingual recipe on validation: which training levers make multilingual-e5-small better on UMSAB's
eight languages, on a cheaper proxy of the full run, and by more than the seeds' spread.

Every candidate is the issue's recipe (`bench_multilingual.DEFAULT_RECIPE`: 2 epochs, learning rate 5e-5, batch 32,
train.py's defaults otherwise) with one lever changed, or `--base` with one lever changed. Each is trained once for all
eight languages (a grid of `m2sa_training.grid`, multilingual mode, text only) with every `--seeds` seed on the proxy:
`--train-per-language` training tweets of each language (a fixed random sample; validation and test whole). Reported
per candidate: validation macro-F1 over the eight languages per seed, its mean, the difference to the baseline, and
the verdict. A lever is kept only when every seed of it beats every seed of the baseline (its lowest above the
baseline's highest): the seeds' spread decides, never the test split, which this benchmark does not read.

    python -m benchmarks.bench_recipe --text-model outputs/multilingual-e5-small --work-dir outputs/bench-recipe

Resumable like the grid: the same command again skips finished runs and continues an interrupted one.
"""

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.bench_multilingual import DEFAULT_RECIPE
from benchmarks.cpu_info import cpu_description
from benchmarks.harness import benchmark_parser, write_results
from benchmarks.recipes import umsab_dataset, umsab_text_grid
from m2sa_training.grid.runner import grid_runs, load_grid_config, read_run_record
from m2sa_training.grid.runner import main as grid_main

BASELINE = "baseline"
CANDIDATES = {
    BASELINE: {},
    "frozen word embeddings": {"freeze_word_embeddings": True},
    "e5's query prefix": {"text_prefix": "query: "},
    "learning rate 1e-4": {"learning_rate": 1e-4},
    "layer-wise decay 0.8": {"layerwise_lr_decay": 0.8},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "warm-up 10 % + cosine": {"warmup_ratio": 0.1, "lr_scheduler": "cosine"},
}
"""One lever each, on top of the base recipe (what each is for: docs/experiments.md)."""
SAMPLE_SEED = 0


def proxy_dataset(full, directory, train_per_language):
    """`full` (a dataset folder of the builder) with `train_per_language` training rows per config, a fixed random
    sample; validation and test as they are. Made once in `directory`."""
    if directory.is_dir():
        return directory
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(full, staging)
    for train in sorted((staging / "data").glob("*/train-*.parquet")):
        table = pq.read_table(train)
        keep = np.sort(np.random.default_rng(SAMPLE_SEED).permutation(table.num_rows)[:train_per_language])
        pq.write_table(table.take(keep), train)
    staging.rename(directory)
    return directory


def recipe_folder_name(recipe):
    """A recipe's folder: named by how it differs from the issue's recipe, so a recipe reached twice (a candidate of
    one `--base` is the baseline of another) is trained once."""
    changes = {key: value for key, value in sorted(recipe.items()) if DEFAULT_RECIPE.get(key) != value}
    name = "+".join(f"{key}={json.dumps(value)}" for key, value in changes.items()) or "issue-recipe"
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", name)


def candidate_grid(args, dataset, name, recipe):
    """The grid file of one candidate (multilingual, text only), written where its runs go."""
    folder = args.work_dir / "candidates" / recipe_folder_name(recipe)
    folder.mkdir(parents=True, exist_ok=True)
    return umsab_text_grid(folder, f"Recipe screen: {name}", args.text_model, ["multilingual"], args.seeds,
                           {"dataset": str(dataset), **recipe})


def validation_scores(grid_path):
    """{seed: (validation macro-F1 over all eight languages, {language: macro-F1}, train seconds)} of the finished
    runs."""
    grid = load_grid_config(grid_path)
    scores = {}
    for run in grid_runs(grid):
        record = read_run_record(grid, run)
        if record is not None:
            validation = record["results"]["validation"]
            scores[run.seed] = (validation["overall"]["macro_f1"],
                                {code: result["macro_f1"] for code, result in validation["per_language"].items()},
                                record["train_seconds"])
    return scores


def screen(results, seeds):
    """Per candidate: its seeds' validation macro-F1, mean, the difference to the baseline and the verdict (kept only
    when its lowest seed beats the baseline's highest)."""
    baseline = [results[BASELINE][seed][0] for seed in seeds if seed in results.get(BASELINE, {})]
    table = {}
    for name, by_seed in results.items():
        values = [by_seed[seed][0] for seed in seeds if seed in by_seed]
        if not values:
            continue
        row = {"seeds": {seed: by_seed[seed][0] for seed in seeds if seed in by_seed}, "mean": float(np.mean(values)),
               "spread": float(np.ptp(values)),
               "per_language": {code: float(np.mean([by_seed[seed][1][code] for seed in by_seed]))
                                for code in next(iter(by_seed.values()))[1]},
               "train_minutes": {seed: by_seed[seed][2] / 60 for seed in seeds if seed in by_seed}}
        if name != BASELINE and len(values) == len(seeds) and len(baseline) == len(seeds):
            row["difference"] = row["mean"] - float(np.mean(baseline))
            row["verdict"] = ("kept: every seed beats every baseline seed" if min(values) > max(baseline)
                              else "worse on every seed" if max(values) < min(baseline)
                              else "within the seeds' spread")
        table[name] = row
    return table


def markdown(table, seeds):
    lines = ["| candidate | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean | − baseline | verdict | "
             "train minutes per seed |", "|---|" + "---|" * (len(seeds) + 4)]
    for name, row in table.items():
        cells = [f"{row['seeds'][seed]:.4f}" if seed in row["seeds"] else "–" for seed in seeds]
        difference = f"{row['difference']:+.4f}" if "difference" in row else "–"
        minutes = " / ".join(f"{value:.1f}" for value in row["train_minutes"].values())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['mean']:.4f} | {difference} | "
                     f"{row.get('verdict', '–')} | {minutes} |")
    return "\n".join(lines)


def main():
    parser = benchmark_parser(__doc__, out="recipe_screen.json", data_root=True, work_dir=True, seeds=True)
    parser.add_argument("--text-model", type=Path, required=True,
                        help="the multilingual-e5-small folder convert.py wrote (or another text tower)")
    parser.add_argument("--train-per-language", type=int, default=300,
                        help="training tweets per language in the proxy (default: 300 of 1,656)")
    parser.add_argument("--base", type=json.loads, default={},
                        help="train.py options every candidate starts from, over the issue's recipe, as JSON "
                             "(default: {}, the issue's recipe)")
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES),
                        help="which candidates to train (default: all; the baseline is always trained)")
    parser.add_argument("--report-only", action="store_true", help="report the finished runs; train nothing")
    parser.set_defaults(seeds=[1, 2])
    args = parser.parse_args()
    if args.work_dir is None:
        sys.exit("Pass --work-dir: the runs take hours on a CPU and are kept there, so a rerun continues them.")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    full = umsab_dataset(args.work_dir / "umsab-dataset", args.data_root)
    dataset = proxy_dataset(full, args.work_dir / f"umsab-proxy-{args.train_per_language}", args.train_per_language)
    base = {**DEFAULT_RECIPE, **args.base}
    names = [BASELINE, *(name for name in args.candidates if name != BASELINE)]
    results = {}
    for name in names:
        grid_path = candidate_grid(args, dataset, name, {**base, **CANDIDATES[name]})
        if not args.report_only:
            grid_main(["--config", str(grid_path)])
        results[name] = validation_scores(grid_path)
    table = screen(results, args.seeds)
    print(markdown(table, args.seeds))
    write_results(args.out, {"cpu": cpu_description(), "text_tower": args.text_model.name, "base": base,
                             "train_per_language": args.train_per_language, "seeds": args.seeds,
                             "table": table, "markdown": markdown(table, args.seeds)})


if __name__ == "__main__":
    main()

"""Screening the multilingual recipe on validation: which training levers make multilingual-e5-small better on UMSAB's
eight languages, on a cheaper proxy of the full run, and by more than the seeds' spread.

Every candidate is the issue's recipe (`bench_multilingual.DEFAULT_RECIPE`: 2 epochs, learning rate 5e-5, batch 32,
train.py's defaults otherwise) with one lever changed, or `--base` with one lever changed. Each is trained once for all
eight languages (a grid of `m2sa_training.grid`, multilingual mode, text only) with every `--seeds` seed on the proxy:
`--train-per-language` training tweets of each language (a fixed random sample; validation and test whole), or on
the whole training split (`--train-per-language all`, full runs). Reported per candidate: validation macro-F1 over
the eight languages per seed, its mean, the difference to the baseline and two verdicts. Unpaired (the proxy's rule):
kept only when every seed of it beats every seed of the baseline (its lowest above the baseline's highest), two
seeds or more (one seed measures no spread). Paired by
seed (the rule of full runs, where seeds are few): higher than the baseline on every seed, two seeds or more. The
seeds decide, never the test split: it is read only with `--test-of`, for recipes already chosen.

    python -m benchmarks.bench_recipe --text-model outputs/multilingual-e5-small --work-dir outputs/bench-recipe
    python -m benchmarks.bench_recipe --text-model outputs/multilingual-e5-small --work-dir outputs/bench-recipe-full \\
        --train-per-language all --base '{"freeze_word_embeddings": true}' --candidates "learning rate 1e-4"

Resumable like the grid: the same command again skips finished runs and continues an interrupted one.
"""

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.bench_multilingual import DEFAULT_RECIPE, language_scores, mean_of_languages
from benchmarks.cpu_info import cpu_description
from benchmarks.harness import benchmark_parser, write_results
from benchmarks.recipes import umsab_dataset, umsab_text_grid
from m2sa_training.grid.runner import finished_runs, load_grid_config
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
    "3 epochs": {"num_epochs": 3},
    "average the last 2 checkpoints": {"average_last_checkpoints": 2},
}
"""One lever each, on top of the base recipe (what each is for: docs/experiments/recipe-screen.md)."""
SAMPLE_SEED = 0
FEWEST_SEEDS = 2
"""Both verdicts need this many seeds a side: with one, no spread is measured and any higher score would pass."""


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


def training_rows(value):
    """`--train-per-language`: a positive number of tweets, or 'all' (None: the whole training split)."""
    if value == "all":
        return None
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(
            f"--train-per-language takes a positive number of tweets or 'all', not {value!r}")
    return int(value)


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


def validation_scores(finished):
    """{seed: (validation macro-F1 over all eight languages, {language: macro-F1}, train seconds)} of the finished
    runs ((run, record) pairs of `finished_runs`)."""
    scores = {}
    for run, record in finished:
        validation = record["results"]["validation"]
        scores[run.seed] = (validation["overall"]["macro_f1"],
                            {code: result["macro_f1"] for code, result in validation["per_language"].items()},
                            record["train_seconds"])
    return scores


def checkpoint_averages(finished):
    """{seed: what `--average-last-checkpoints` recorded (epochs averaged, validation macro-F1, kept or not)} of the
    finished runs that averaged: the average against the best epoch of the same run."""
    return {run.seed: record["checkpoint_average"] for run, record in finished if record.get("checkpoint_average")}


def scores_on_test(finished):
    """The test split, read only for recipes already chosen on validation (`--test-of`): per language its macro-F1
    over the finished seeds (mean, std) with a 95 % bootstrap interval over test tweets, and the mean of the
    languages with its interval."""
    confusions = {}
    for _, record in finished:
        for code, result in record["results"]["test"]["per_language"].items():
            confusions.setdefault(code, []).append(result["confusion_matrix"])
    table, draws = {}, []
    for offset, (code, matrices) in enumerate(confusions.items()):
        table[code], language_draws = language_scores(matrices, draw_seed=offset)
        draws.append(language_draws)
    if table:
        table[f"mean of the {len(draws)}"] = mean_of_languages(list(table.values()), draws)
    return table


def markdown_on_test(tables):
    """One column per recipe read on test, one row per language."""
    names = list(tables)
    lines = ["| language | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for code in next(iter(tables.values())):
        cells = []
        for name in names:
            row = tables[name][code]
            cells.append(f"{row['mean']:.3f}" + (f" ± {row['std']:.3f}" if row.get("std") else "")
                         + " [{:.3f}, {:.3f}]".format(*row["interval_95"]))
        lines.append(f"| {code} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def screen(results, seeds):
    """Per candidate: its seeds' validation macro-F1, mean, the difference to the baseline and the unpaired verdict
    (kept only when its lowest seed beats the baseline's highest) once every seed is finished, and the differences
    paired by seed with their verdict (`paired_verdict`) over the seeds both have finished."""
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
            row["verdict"] = ("too few seeds: the spread is not measured" if len(values) < FEWEST_SEEDS
                              else "kept: every seed beats every baseline seed" if min(values) > max(baseline)
                              else "worse on every seed" if max(values) < min(baseline)
                              else "within the seeds' spread")
        paired = {seed: by_seed[seed][0] - results[BASELINE][seed][0] for seed in seeds
                  if seed in by_seed and seed in results.get(BASELINE, {})}
        if name != BASELINE and paired:  # over the seeds both have finished
            row["paired_differences"] = paired
            row["paired_verdict"] = paired_verdict(list(paired.values()))
        table[name] = row
    return table


def paired_verdict(differences):
    """The rule of full runs, where seeds are few: the same seed gives candidate and base the same head initialisation
    and batch order, so each seed's difference is a paired comparison. Kept when the candidate is higher on every
    seed, on two seeds or more."""
    if len(differences) < FEWEST_SEEDS:
        return "too few seeds to pair"
    return ("higher on every seed" if min(differences) > 0 else "lower on every seed" if max(differences) < 0
            else "mixed")


def markdown(table, seeds):
    lines = ["| candidate | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean | − baseline | verdict | "
             "paired by seed | train minutes per seed |", "|---|" + "---|" * (len(seeds) + 5)]
    for name, row in table.items():
        cells = [f"{row['seeds'][seed]:.4f}" if seed in row["seeds"] else "–" for seed in seeds]
        difference = f"{row['difference']:+.4f}" if "difference" in row else "–"
        minutes = " / ".join(f"{value:.1f}" for value in row["train_minutes"].values())
        paired = ("–" if "paired_differences" not in row else
                  ", ".join(f"{value:+.4f}" for value in row["paired_differences"].values())
                  + f": {row['paired_verdict']}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['mean']:.4f} | {difference} | "
                     f"{row.get('verdict', '–')} | {paired} | {minutes} |")
    return "\n".join(lines)


def main():
    parser = benchmark_parser(__doc__, out="recipe_screen.json", data_root=True, work_dir=True, seeds=True)
    parser.add_argument("--text-model", type=Path, required=True,
                        help="the multilingual-e5-small folder convert.py wrote (or another text tower)")
    parser.add_argument("--train-per-language", type=training_rows, default=300,
                        help="training tweets per language in the proxy (default: 300 of 1,656), or 'all' for full "
                             "runs on the whole training split (give them their own --work-dir)")
    parser.add_argument("--base", type=json.loads, default={},
                        help="train.py options every candidate starts from, over the issue's recipe, as JSON "
                             "(default: {}, the issue's recipe)")
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES),
                        help="which candidates to train (default: all; the baseline is always trained)")
    parser.add_argument("--report-only", action="store_true", help="report the finished runs; train nothing")
    parser.add_argument("--test-of", nargs="+", choices=list(CANDIDATES), default=[],
                        help="after choosing on validation: also report these candidates' test macro-F1 per language "
                             "(default: none; the screen itself never reads test)")
    parser.set_defaults(seeds=[1, 2])
    args = parser.parse_args()
    names = [BASELINE, *(name for name in args.candidates if name != BASELINE)]
    if unscreened := [name for name in args.test_of if name not in names]:
        parser.error(f"--test-of {unscreened} names candidates this command does not screen: add them to "
                     "--candidates (their finished runs are read, not trained again)")
    if args.work_dir is None:
        sys.exit("Pass --work-dir: the runs take hours on a CPU and are kept there, so a rerun continues them.")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    full = umsab_dataset(args.work_dir / "umsab-dataset", args.data_root)
    dataset = (full if args.train_per_language is None else
               proxy_dataset(full, args.work_dir / f"umsab-proxy-{args.train_per_language}", args.train_per_language))
    base = {**DEFAULT_RECIPE, **args.base}
    results, tests, averages = {}, {}, {}
    for name in names:
        grid_path = candidate_grid(args, dataset, name, {**base, **CANDIDATES[name]})
        if not args.report_only:
            grid_main(["--config", str(grid_path)])
        finished = finished_runs(load_grid_config(grid_path))
        results[name] = validation_scores(finished)
        if averaged := checkpoint_averages(finished):
            averages[name] = averaged
        if name in args.test_of:
            tests[name] = scores_on_test(finished)
    table = screen(results, args.seeds)
    print(markdown(table, args.seeds))
    report = {"cpu": cpu_description(), "text_tower": args.text_model.name, "base": base,
              "train_per_language": args.train_per_language or "all", "seeds": args.seeds,
              "table": table, "markdown": markdown(table, args.seeds)}
    if averages:
        report["checkpoint_averages"] = averages
    if tests:
        print(markdown_on_test(tests))
        report.update(test=tests, test_markdown=markdown_on_test(tests))
    write_results(args.out, report)


if __name__ == "__main__":
    main()

"""The paper's multilingual claim on real tweets: one model per language against one model for all eight UMSAB
languages, the same text tower and recipe for both.

The text tower is multilingual-e5-small (rebuilt offline by `../shared/tools/e5/convert.py`, see its README); the
data is UMSAB's eight languages (Arabic, English, French, German, Hindi, Italian, Portuguese, Spanish) built by
`dataset_script` (its id-derived train / validation / test splits). The runs are a grid (`m2sa_training.grid`):
monolingual (one model per language) and multilingual (one model on all eight), text only, `--seeds` seeds each.
Reported per language: test macro-F1 (mean over seeds, their std) with a 95 % bootstrap interval over test tweets, the
multilingual minus monolingual difference with its interval and its value on each seed (the two modes of one seed
paired), and the verdict: multilingual wins or loses where the interval excludes 0 and every seed's difference has that
sign, the seeds disagree where the interval excludes 0 but they do not, the split cannot tell otherwise. An anchor on
the same split: word and character n-gram TF-IDF + logistic regression, one model for all eight (deterministic).

    python ../shared/tools/e5/convert.py --out outputs/multilingual-e5-small     # once (see its README)
    python -m benchmarks.bench_multilingual --text-model outputs/multilingual-e5-small \\
        --work-dir outputs/bench-multilingual --seeds 1

Interrupted, or out of time? The same command again: finished runs are skipped, an interrupted one continues from its
last epoch checkpoint, so the work can span sessions. `--report-only` writes the results of the runs finished so far.
"""

import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.cpu_info import cpu_description
from benchmarks.figures import draw
from benchmarks.harness import benchmark_parser, write_results
from benchmarks.recipes import tfidf_baseline, umsab_dataset, umsab_text_grid
from benchmarks.uncertainty import bootstrap_macro_f1_draws, percentile_interval
from dataset_script.umsab import UMSAB_LANGUAGES
from m2sa_training.evaluation.metrics import macro_f1_from_confusion, mean_and_spread
from m2sa_training.grid.runner import finished_runs, grid_runs, load_grid_config
from m2sa_training.grid.runner import main as grid_main

DEFAULT_RECIPE = {"learning_rate": 5e-5, "batch_size": 32, "num_epochs": 2}
"""The budget of both modes: 2 epochs at learning rate 5e-5, batch 32, train.py's defaults otherwise (64 tokens, mean
pooling, linear decay, the best epoch on validation macro-F1 kept)."""
MODES = ("monolingual", "multilingual")
ANCHOR = "tfidf_lr"
"""The table's key of the TF-IDF + logistic regression anchor (one model for all eight languages)."""
DRAWS = 2000


def grid_config(args, dataset):
    """The grid of this comparison, written where its runs go."""
    return umsab_text_grid(args.work_dir, "UMSAB, multilingual-e5-small: one model per language against one for all",
                           args.text_model, MODES, args.seeds, {"dataset": str(dataset), **args.recipe})


def test_confusions(finished):
    """{mode: {language code: {seed: test confusion matrix}}}, and the train seconds of each mode, from the (run,
    record) pairs of `finished_runs`."""
    confusions = {mode: {code: {} for code in UMSAB_LANGUAGES.values()} for mode in MODES}
    seconds = {mode: 0.0 for mode in MODES}
    for run, record in finished:
        test = record["results"]["test"]
        seconds[run.mode] += record["train_seconds"]
        if run.mode == "monolingual":
            confusions[run.mode][run.scope.removeprefix("umsab_")][run.seed] = test["overall"]["confusion_matrix"]
        else:
            for code, result in test["per_language"].items():
                confusions[run.mode][code][run.seed] = result["confusion_matrix"]
    return confusions, seconds


def anchor_confusions(dataset):
    """{language code: {0: test confusion matrix}} of the TF-IDF + logistic regression anchor, one model for all
    eight languages (deterministic: one run, in the shape of `test_confusions`)."""
    per_language = tfidf_baseline(dataset, "all")["test"]["per_language"]
    return {code: {0: per_language[code]["confusion_matrix"]} for code in UMSAB_LANGUAGES.values()}


def pooled(matrices):
    """The seeds' confusion matrices as one distribution over the test tweets (their mean), for the bootstrap."""
    return np.mean(np.asarray(matrices, dtype=float), axis=0)


def language_scores(matrices, draw_seed):
    """One setting's test macro-F1 on one language from its seeds' confusion matrices: mean and std over the seeds,
    a 95 % bootstrap interval over the test tweets and n; with the bootstrap draws, for differences and means."""
    draws = bootstrap_macro_f1_draws(pooled(matrices), DRAWS, seed=draw_seed)
    row = {**mean_and_spread([macro_f1_from_confusion(np.asarray(matrix)) for matrix in matrices]),
           "interval_95": list(percentile_interval(draws)), "n": int(np.sum(matrices[0]))}
    return row, draws


def seed_differences(by_seed):
    """{seed: multilingual - monolingual test macro-F1} over the seeds both modes finished; `by_seed` maps each mode
    to {seed: confusion matrix}."""
    seeds = sorted(set(by_seed["multilingual"]) & set(by_seed["monolingual"]))
    return {seed: float(macro_f1_from_confusion(np.asarray(by_seed["multilingual"][seed]))
                        - macro_f1_from_confusion(np.asarray(by_seed["monolingual"][seed]))) for seed in seeds}


def difference(row, interval, per_seed):
    """The multilingual - monolingual entry of a table row."""
    return {"mean": row["multilingual"]["mean"] - row["monolingual"]["mean"], "interval_95": interval,
            "per_seed": {str(seed): value for seed, value in per_seed.items()},
            "verdict": verdict(interval, list(per_seed.values()))}


def mean_of_languages(rows, draws):
    """The mean macro-F1 over languages (rows of `language_scores`) and its interval, from the mean of their draws."""
    return {"mean": float(np.mean([row["mean"] for row in rows])),
            "interval_95": list(percentile_interval(np.mean(draws, axis=0)))}


def compare(confusions):
    """Per language and over the eight: each mode's macro-F1 (mean, std over seeds, bootstrap interval), the anchor's
    where `confusions` holds it (under `ANCHOR`, from `anchor_confusions`), and the difference multilingual -
    monolingual with its interval, its value on each seed and the verdict. The bootstrap resamples each mode's test
    tweets independently (the pairing of the two on the same tweets is not kept), so its intervals are wide rather
    than narrow; the seeds are paired."""
    settings = [setting for setting in (*MODES, ANCHOR) if setting in confusions]
    languages = [code for code in UMSAB_LANGUAGES.values() if all(confusions[mode][code] for mode in MODES)]
    table, draws, per_seed = {}, {setting: [] for setting in settings}, []
    for code in languages:
        row = {}
        for offset, setting in enumerate(settings):
            matrices = [matrix for _, matrix in sorted(confusions[setting][code].items())]
            row[setting], scores = language_scores(matrices, draw_seed=offset)
            draws[setting].append(scores)
        per_seed.append(seed_differences({mode: confusions[mode][code] for mode in MODES}))
        row["difference"] = difference(row, list(percentile_interval(draws["multilingual"][-1]
                                                                     - draws["monolingual"][-1])), per_seed[-1])
        table[code] = row
    if len(languages) == len(UMSAB_LANGUAGES):  # the mean over the eight, when every language is finished
        means = {setting: np.mean(draws[setting], axis=0) for setting in settings}
        row = {setting: mean_of_languages([table[code][setting] for code in languages], draws[setting])
               for setting in settings}
        seeds = set.intersection(*(set(differences) for differences in per_seed))
        mean_per_seed = {seed: float(np.mean([differences[seed] for differences in per_seed]))
                         for seed in sorted(seeds)}
        row["difference"] = difference(row, list(percentile_interval(means["multilingual"] - means["monolingual"])),
                                       mean_per_seed)
        table["mean of the 8"] = row
    return table


def verdict(difference_interval, per_seed):
    """A side wins where the bootstrap interval of the difference excludes 0 and the difference has the same sign on
    every seed; where the interval excludes 0 but a seed goes the other way, the seeds disagree."""
    low, high = difference_interval
    if low <= 0 <= high:
        return "the split cannot tell"
    sign = 1 if low > 0 else -1
    if all(value * sign > 0 for value in per_seed):
        return "multilingual wins" if sign > 0 else "monolingual wins"
    return "the seeds disagree"


def markdown(table):
    anchor = ANCHOR in next(iter(table.values()), {})
    lines = ["| language | monolingual | multilingual | multilingual − monolingual | per seed | verdict |"
             + (" TF-IDF + LR |" if anchor else ""), "|---|---|---|---|---|---|" + ("---|" if anchor else "")]
    for code, row in table.items():
        cells = [f"{row[setting]['mean']:.3f}" + (f" ± {row[setting]['std']:.3f}" if row[setting].get("std") else "")
                 + " [{:.3f}, {:.3f}]".format(*row[setting]["interval_95"])
                 for setting in ((*MODES, ANCHOR) if anchor else MODES)]
        difference = row["difference"]
        seeds = ", ".join(f"{value:+.3f}" for value in difference["per_seed"].values())
        interval = "[{:+.3f}, {:+.3f}]".format(*difference["interval_95"])
        lines.append(f"| {code} | {cells[0]} | {cells[1]} | {difference['mean']:+.3f} {interval} | {seeds} "
                     f"| {difference['verdict']} |" + (f" {cells[2]} |" if anchor else ""))
    return "\n".join(lines)


def main():
    parser = benchmark_parser(__doc__, out="multilingual.json", data_root=True, work_dir=True, seeds=True)
    parser.add_argument("--text-model", type=Path, required=True,
                        help="the multilingual-e5-small folder convert.py wrote (or another text tower)")
    parser.add_argument("--recipe", type=json.loads, default=DEFAULT_RECIPE,
                        help=f"train.py options of both modes, as JSON (default: {json.dumps(DEFAULT_RECIPE)})")
    parser.add_argument("--report-only", action="store_true", help="write the results of the finished runs; train "
                                                                   "nothing")
    parser.set_defaults(seeds=[1])
    args = parser.parse_args()
    if args.work_dir is None:
        sys.exit("Pass --work-dir: the runs take hours on a CPU and are kept there, so a rerun continues them.")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    dataset = umsab_dataset(args.work_dir / "umsab-dataset", args.data_root)
    config_path = grid_config(args, dataset)
    if not args.report_only:
        grid_main(["--config", str(config_path)])
    grid = load_grid_config(config_path)
    finished = finished_runs(grid)
    confusions, seconds = test_confusions(finished)
    table = compare({**confusions, ANCHOR: anchor_confusions(dataset)})
    print(markdown(table))
    write_results(args.out, {"cpu": cpu_description(), "text_tower": args.text_model.name, "recipe": args.recipe,
                             "seeds": args.seeds, "runs_finished": len(finished), "runs": len(grid_runs(grid)),
                             "train_minutes": {mode: round(value / 60, 1) for mode, value in seconds.items()},
                             "table": table, "markdown": markdown(table)})
    draw(args.out)


if __name__ == "__main__":
    main()

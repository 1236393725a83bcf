"""Evaluation reports: `aggregate_runs` results (from `metrics`) as Markdown tables, figures and `evaluation.json`.

Reports read the label names and the problem type from the results, so a regression model's report shows its error
and correlation metrics and no confusion matrix.
"""

import json
import re
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics import METRIC_TITLES, OVERALL, REGRESSION_METRICS, SCALAR_METRICS, is_regression

CONFUSION_TITLE_CHARACTERS = 40  # what fits on one line of the 4.5-inch-wide confusion-matrix figure
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def format_metric(value):
    """An aggregated `{"mean", "std", "values"}` metric: `0.812` for one run, `0.812 ± 0.010` for several; `–` for
    None (a correlation undefined in every run)."""
    if value is None:
        return "–"
    if len(value["values"]) == 1:
        return f"{value['mean']:.3f}"
    return f"{value['mean']:.3f} ± {value['std']:.3f}"


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _blocks_by_row(result):
    return [*result["per_language"].items(), (OVERALL, result[OVERALL])]


def metrics_table(named_results, metric="macro_f1"):
    """A Markdown table of one metric: a row per language (then `overall`), a column per named result.

    Args:
        named_results: column name -> `aggregate_runs` result, e.g.
            `{"multimodal": ..., "text-only": ..., "majority": ...}`.
        metric: one of `SCALAR_METRICS`, or of `REGRESSION_METRICS` for regression results.

    A language missing from a result shows as `–` in its column.
    """
    if metric not in SCALAR_METRICS + REGRESSION_METRICS:
        raise ValueError(f"metric must be one of {SCALAR_METRICS} (or {REGRESSION_METRICS} for a regression model), "
                         f"got {metric!r}.")
    if not named_results:
        raise ValueError("metrics_table needs at least one named result, got none.")
    languages = sorted({language for result in named_results.values() for language in result["per_language"]})
    rows = []
    for language in [*languages, OVERALL]:
        cells = []
        for result in named_results.values():
            block = result[OVERALL] if language == OVERALL else result["per_language"].get(language)
            cells.append("–" if block is None else format_metric(block[metric]))
        rows.append([language, *cells])
    return _markdown_table([f"language ({METRIC_TITLES[metric]})", *named_results], rows)


def _regression_split_markdown(split, result):
    header = ["language", *(METRIC_TITLES[metric] for metric in REGRESSION_METRICS), "support"]
    rows = [[name, *(format_metric(block[metric]) for metric in REGRESSION_METRICS), str(block["support"])]
            for name, block in _blocks_by_row(result)]  # fmt: skip
    runs_note = ""
    if result[OVERALL]["num_runs"] > 1:
        runs_note = (f"\n\nMetrics are mean ± sample std over {result[OVERALL]['num_runs']} runs; support is summed "
                     f"over the runs.")
    return f"## {split}{runs_note}\n\n{_markdown_table(header, rows)}\n"


def _split_markdown(split, result):
    if is_regression(result):
        return _regression_split_markdown(split, result)
    label_names = result["label_names"]
    header = ["language", *(METRIC_TITLES[metric] for metric in SCALAR_METRICS), "support"]
    rows = [
        [name, *(format_metric(block[metric]) for metric in SCALAR_METRICS), str(block["support"])]
        for name, block in _blocks_by_row(result)
    ]
    matrix = result[OVERALL]["confusion_matrix"]
    matrix_rows = [[name, *map(str, counts)] for name, counts in zip(label_names, matrix)]
    runs_note = ""
    if result[OVERALL]["num_runs"] > 1:
        runs_note = (
            f"\n\nMetrics are mean ± sample std over {result[OVERALL]['num_runs']} runs; support and the confusion "
            f"matrix are summed over the runs."
        )
    return (
        f"## {split}{runs_note}\n\n{_markdown_table(header, rows)}\n\n"
        f"Confusion matrix ({OVERALL}; rows: true label, columns: predicted label):\n\n"
        f"{_markdown_table(['true / predicted', *label_names], matrix_rows)}\n"
    )


def _plot_per_language(result, metric, path, title):
    """Bars of `metric` per language, the overall value as a dashed line (sample-std error bars over runs)."""
    blocks = result["per_language"]
    several_runs = result[OVERALL]["num_runs"] > 1
    means = [block[metric]["mean"] for block in blocks.values()]
    errors = [block[metric]["std"] for block in blocks.values()] if several_runs else None
    overall = result[OVERALL][metric]["mean"]

    figure = Figure(figsize=(max(4.0, 0.5 * len(blocks) + 2.0), 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.bar(list(blocks), means, yerr=errors, capsize=3 if several_runs else 0, color="tab:blue")
    axes.axhline(overall, color="tab:red", linestyle="--", label=f"{OVERALL} ({overall:.3f})")
    # Headroom for the legend above the highest bar (F1 reaches at most 1; an error has no upper bound).
    axes.set_ylim(0, 1.15 if metric == "macro_f1" else 1.3 * max([*means, overall]) or 1.0)
    axes.set_xlabel("language")
    axes.set_ylabel(METRIC_TITLES[metric])
    axes.set_title(title)
    axes.legend(loc="upper right")
    figure.savefig(path, dpi=100)


def confusion_matrix_figure(result, title):
    """The overall confusion matrix of `result` as a matplotlib `Figure` (title wrapped to the figure's width)."""
    matrix = np.array(result[OVERALL]["confusion_matrix"])
    figure = Figure(figsize=(4.5, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    label_names = result["label_names"]
    ticks = list(range(len(label_names)))
    axes.set_xticks(ticks, label_names)
    axes.set_yticks(ticks, label_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(textwrap.fill(title, width=CONFUSION_TITLE_CHARACTERS), fontsize="medium")
    threshold = matrix.max() / 2
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    return figure


MEAN_BASELINE = "training mean"
"""The regression baseline's name in the comparison: it predicts the mean training value for every tweet."""
REGRESSION_NOTE = (
    "A regression model: it gives each tweet one number. MSE (mean squared error) and MAE (mean absolute error) are "
    "lower for better predictions; Pearson r and Spearman ρ are the linear and rank correlations of predictions and "
    "true values (– where undefined: fewer than two tweets, or constant values)."
)


def comparison_markdown(summary):
    """The comparison of every model with its baseline, per split (`summary`: split -> {name: `aggregate_runs`
    result}): macro-F1 tables, or for regression MSE and Pearson r tables after a line that says what they mean."""
    if not any(is_regression(result) for results in summary.values() for result in results.values()):
        return "\n\n".join(f"### {split} macro-F1\n\n{metrics_table(summary[split])}" for split in summary)
    tables = [f"### {split} {METRIC_TITLES[metric]}\n\n{metrics_table(summary[split], metric=metric)}"
              for split in summary for metric in ("mse", "pearson")]  # fmt: skip
    return "\n\n".join([f"{REGRESSION_NOTE} `{MEAN_BASELINE}` predicts the mean training value for every tweet.",
                          *tables])


def write_evaluation_report(out_dir, results, title):
    """Write the evaluation of each split to `out_dir` and return the paths written, by name.

    Args:
        out_dir: folder to write into (created if missing).
        results: split name (`"validation"`, `"test"`, ...) -> `aggregate_runs` result.
        title: heading of the Markdown report and prefix of the plot titles.

    Writes `evaluation.json` (all results), `evaluation.md` (per split: per-language macro-P/R/F1, accuracy and
    support, then the overall confusion matrix), `per_language_f1_<split>.png` (bars per language, the overall
    as a dashed line, sample-std error bars for aggregated results) and `confusion_matrix_<split>.png`. The keys
    of the returned dict are `"json"`, `"markdown"`, `"per_language_f1_<split>"` and `"confusion_matrix_<split>"`.

    Regression results give per split per-language MSE, MAE, Pearson r, Spearman ρ and support in `evaluation.md`
    (which says it is a regression model) and `per_language_mse_<split>.png`; there is no confusion matrix.
    """
    if not results:
        raise ValueError("write_evaluation_report needs the results of at least one split, got none.")
    bad_splits = [split for split in results if not _SPLIT_NAME.match(split)]
    if bad_splits:
        raise ValueError(
            f"Split names become file names and may only hold letters, digits, '_', '.' and '-': got {bad_splits}."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "evaluation.json", "markdown": out_dir / "evaluation.md"}
    paths["json"].write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    sections = [_split_markdown(split, result) for split, result in results.items()]
    intro = REGRESSION_NOTE + "\n\n" if any(is_regression(result) for result in results.values()) else ""
    paths["markdown"].write_text(f"# {title}\n\n{intro}" + "\n".join(sections), encoding="utf-8")
    for split, result in results.items():
        metric, plot = ("mse", f"per_language_mse_{split}") if is_regression(result) else (
            "macro_f1", f"per_language_f1_{split}")
        paths[plot] = out_dir / f"{plot}.png"
        _plot_per_language(result, metric, paths[plot], f"{title}: {METRIC_TITLES[metric]} per language ({split})")
        if is_regression(result):
            continue
        paths[f"confusion_matrix_{split}"] = out_dir / f"confusion_matrix_{split}.png"
        figure = confusion_matrix_figure(result, f"{title}: confusion matrix ({split})")
        figure.savefig(paths[f"confusion_matrix_{split}"], dpi=100)
    return paths

"""The grid's tables, rebuilt from its run records at any time.

Paper format: a row per language and an "all languages" row, a column per setting (mode, text tower, image tower),
macro-F1 as mean ± sample std over seeds, the best per row in bold. Written as `results.md` (test, then validation),
`results.csv` (the same numbers, one mean / std / seeds column triple per setting), `results.png` (a heatmap of the
test means) and `runs.json` (every run of the grid with its status and per-seed metrics).
"""

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..evaluation.metrics import macro_f1_from_confusion, mean_and_spread
from ..evaluation.reports import format_metric
from ..training.options import NO_VISION

SPLITS = ("test", "validation")
ALL_ROW = "all languages"
ALL_SCOPE = "all"


def setting_name(run):
    towers = f"{run.text_tower}, text only" if run.image_tower == NO_VISION else f"{run.text_tower} + {run.image_tower}"
    return f"{run.mode}: {towers}"


def languages_of_configs(runs, records):
    """{config: the language of its rows} read from the grid's finished monolingual runs, whose results name the one
    language they saw: a grid's languages are dataset configs, which need not be named by their language (the
    builder's `umsab_ar` holds `ar` rows), while a multilingual run reports per language."""
    return {run.scope: next(iter(record["results"]["test"]["per_language"]))
            for run, record in zip(runs, records)
            if record is not None and run.scope != ALL_SCOPE and len(record["results"]["test"]["per_language"]) == 1}


def per_seed_values(runs, records, languages, split, row_languages=None):
    """{row: {seed: macro-F1}} of one setting's finished runs. A multilingual run gives every language's value (found
    under the row's name, or under the language `row_languages` gives its config) and its overall one; monolingual
    runs give their language's, and "all languages" is the macro-F1 of their predictions pooled (summed confusion
    matrices) for each seed whose every language is finished."""
    values = {row: {} for row in [*languages, ALL_ROW]}
    row_languages = row_languages or {}
    pooled = {}
    for run, record in zip(runs, records):
        if record is None:
            continue
        result = record["results"][split]
        if run.scope == ALL_SCOPE:
            for language in languages:
                found = next((result["per_language"][name] for name in (language, row_languages.get(language))
                              if name in result["per_language"]), None)
                if found is not None:
                    values[language][run.seed] = found["macro_f1"]
            values[ALL_ROW][run.seed] = result["overall"]["macro_f1"]
        else:
            values[run.scope][run.seed] = result["overall"]["macro_f1"]
            pooled.setdefault(run.seed, []).append(result["overall"]["confusion_matrix"])
    for seed, matrices in pooled.items():
        if len(matrices) == len(languages):
            values[ALL_ROW][seed] = macro_f1_from_confusion(np.sum(matrices, axis=0))
    return values


def grid_table(runs, records, languages, split):
    """{setting: {row: mean_and_spread over seeds, or None}} for one split, settings in the grid's order."""
    by_setting = {}
    for run, record in zip(runs, records):
        by_setting.setdefault(setting_name(run), ([], []))
        by_setting[setting_name(run)][0].append(run)
        by_setting[setting_name(run)][1].append(record)
    table = {}
    row_languages = languages_of_configs(runs, records)
    for setting, (setting_runs, setting_records) in by_setting.items():
        values = per_seed_values(setting_runs, setting_records, languages, split, row_languages)
        table[setting] = {row: mean_and_spread([by_seed[seed] for seed in sorted(by_seed)]) if by_seed else None
                          for row, by_seed in values.items()}  # fmt: skip
    return table


def best_per_row(table, rows):
    """{row: the highest mean as shown (3 decimals)}, so that every cell showing it is bold."""
    best = {}
    for row in rows:
        means = [round(cells[row]["mean"], 3) for cells in table.values() if cells[row] is not None]
        best[row] = max(means) if means else None
    return best


def markdown_table(table, rows, num_seeds):
    best = best_per_row(table, rows)
    lines = ["| language | " + " | ".join(table) + " |", "|---|" + "---|" * len(table)]
    for row in rows:
        cells = []
        for setting_cells in table.values():
            value = setting_cells[row]
            if value is None:
                cells.append("–")
                continue
            text = format_metric(value)
            if round(value["mean"], 3) == best[row]:
                text = f"**{text}**"
            if len(value["values"]) < num_seeds:
                text += f" ({len(value['values'])}/{num_seeds} seeds)"
            cells.append(text)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def csv_text(tables, rows):
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    settings = list(next(iter(tables.values())))
    writer.writerow(["split", "language", *(f"{setting} {part}" for setting in settings
                                            for part in ("mean", "std", "seeds"))])  # fmt: skip
    for split, table in tables.items():
        for row in rows:
            cells = []
            for setting in settings:
                value = table[setting][row]
                cells += ["", "", 0] if value is None else [f"{value['mean']:.4f}", f"{value['std']:.4f}",
                                                            len(value["values"])]
            writer.writerow([split, row, *cells])
    return output.getvalue()


def heatmap(table, rows, title, path):
    settings = list(table)
    means = np.array([[np.nan if table[setting][row] is None else table[setting][row]["mean"] for setting in settings]
                      for row in rows])  # fmt: skip
    figure = Figure(figsize=(max(5.0, 1.3 * len(settings) + 2.5), max(3.0, 0.45 * len(rows) + 2.2)),
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(means, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    figure.colorbar(image, ax=axes, label="macro-F1")
    axes.set_xticks(range(len(settings)), [setting.replace(": ", ":\n") for setting in settings], rotation=30,
                    ha="right", fontsize="small")
    axes.set_yticks(range(len(rows)), rows)
    for (row, column), mean in np.ndenumerate(means):
        if not np.isnan(mean):
            axes.text(column, row, f"{mean:.2f}", ha="center", va="center", color="white" if mean < 0.6 else "black")
    axes.set_title(title, fontsize="medium")
    figure.savefig(path, dpi=100, metadata={"Software": None})


def write_grid_report(grid, runs, records):
    """Write `results.md`, `results.csv`, `results.png` and `runs.json` into the grid's output_dir from the records of
    its runs (None for an unfinished run); returns the paths by kind. The same records give the same bytes."""
    out = Path(grid.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [*grid.languages, ALL_ROW]
    tables = {split: grid_table(runs, records, grid.languages, split) for split in SPLITS}
    finished = sum(record is not None for record in records)
    shared = ", ".join(f"{key}={value}" for key, value in sorted(grid.training.items())) or "train.py defaults"
    sections = [
        f"# {grid.title}\n",
        f"{finished} of {len(runs)} runs finished. Macro-F1 per language as mean ± sample std over the seeds "
        f"({', '.join(map(str, grid.seeds))}); the best per row in bold. *{ALL_ROW}*: macro-F1 over the tweets of "
        f"every language pooled (for monolingual settings, the per-language models' predictions together). "
        f"Columns are *mode: text tower + image tower*; *_mt* modes also train on the machine-translated sets "
        f"(evaluation stays on the real tweets).\n",
        f"Shared training options: {shared}.\n",
    ]
    for split in SPLITS:
        sections.append(f"## {split} macro-F1\n\n{markdown_table(tables[split], rows, len(grid.seeds))}\n")
    paths = {"markdown": out / "results.md", "csv": out / "results.csv", "heatmap": out / "results.png",
             "runs": out / "runs.json"}
    paths["markdown"].write_text("\n".join(sections))
    paths["csv"].write_text(csv_text(tables, rows))
    heatmap(tables["test"], rows, f"{grid.title}: test macro-F1 (mean over seeds)", paths["heatmap"])
    listing = [{**dataclasses.asdict(run), "setting": setting_name(run), "finished": record is not None,
                "record": record} for run, record in zip(runs, records)]  # fmt: skip
    paths["runs"].write_text(json.dumps({"grid": dataclasses.asdict(grid), "runs": listing}, indent=2) + "\n")
    return paths

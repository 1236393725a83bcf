"""Epoch time with a frozen image tower: cached features against recomputing them every step, in one run.

The image tower is CLIP ViT-B/32-sized (random weights, 224 x 224 input) and the text tower is the tiny one, so the
image tower dominates the cost, as it does with a frozen CLIP and a small or frozen text model. Both runs train the
same multimodal model on the same demo rows; the cached run computes the image features once (timed separately).

    python -m benchmarks.bench_train [--train-samples 256] [--epochs 2]
"""

import tempfile
from pathlib import Path

from benchmarks.harness import benchmark_parser, write_results
from benchmarks.recipes import run_results
from m2sa_training.training.options import parse_options
from m2sa_training.training.run import run_training
from m2sa_training.training.tiny_towers import save_tiny_vision_tower

VIT_B_32 = dict(kind="clip", image_size=224, patch_size=32, hidden_size=768, num_layers=12, num_heads=12)


def timed_run(work_dir, vision_tower, name, train_samples, epochs, *extra):
    options = parse_options([
        "--output-dir", str(work_dir / name), "--cache-dir", str(work_dir / "cache"), "--vision-model", vision_tower,
        "--freeze-vision-model", "--modalities", "multimodal", "--num-epochs", str(epochs),
        "--max-train-samples", str(train_samples), "--early-stopping-patience", str(epochs + 1), *extra,
    ])
    run_training(options)
    return run_results(work_dir / name, "multimodal", 42)


def main():
    parser = benchmark_parser(__doc__, out="train.json")
    parser.add_argument("--train-samples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="m2sa-bench-train-") as tmp:
        work_dir = Path(tmp)
        vision_tower = str(save_tiny_vision_tower(work_dir / "vit-b-32", **VIT_B_32))
        cached = timed_run(work_dir, vision_tower, "cached", args.train_samples, args.epochs)
        recomputed = timed_run(work_dir, vision_tower, "recomputed", args.train_samples, args.epochs,
                               "--no-cache-features")
    cached_epoch = sum(h["train_seconds"] for h in cached["history"]) / len(cached["history"])
    recomputed_epoch = sum(h["train_seconds"] for h in recomputed["history"]) / len(recomputed["history"])
    report = {
        "train_samples": args.train_samples,
        "epochs": args.epochs,
        "vision_tower": "CLIP ViT-B/32 size, random weights, frozen",
        "epoch_seconds_recomputed": recomputed_epoch,
        "epoch_seconds_cached": cached_epoch,
        "feature_cache_build_seconds": cached["feature_cache_seconds"],
        "speedup": recomputed_epoch / cached_epoch,
        "same_test_macro_f1": cached["results"]["test"]["overall"]["macro_f1"]
        == recomputed["results"]["test"]["overall"]["macro_f1"],
    }
    write_results(args.out, report)
    print(f"{args.train_samples} training tweets, {args.epochs} epochs, frozen ViT-B/32-size image tower\n")
    print("| features | train seconds / epoch |")
    print("|---|---:|")
    print(f"| recomputed every step | {recomputed_epoch:.1f} |")
    print(f"| cached (built once in {report['feature_cache_build_seconds']:.1f} s for all splits) | {cached_epoch:.1f} |")
    print(f"\nspeed-up per epoch: {report['speedup']:.1f}x; same test macro-F1: {report['same_test_macro_f1']}")


if __name__ == "__main__":
    main()

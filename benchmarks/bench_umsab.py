"""Real tweets, no pretrained weights: a text-only M2SA model trained from scratch on UMSAB (8 languages) against a
TF-IDF + logistic-regression baseline, per-language macro-F1 on the validation split, in one run.

The UMSAB folders (../shared/data/umsab) are imported with the dataset builder, then
`train.py --preset tiny --dataset <built> --languages all --vision-model none` is run through the same code.

    python benchmarks/bench_umsab.py [--epochs 8] [extra train.py flags...]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import datasets  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline, make_union  # noqa: E402

from dataset_script.builder import build_dataset  # noqa: E402
from dataset_script.umsab import umsab_source  # noqa: E402
from m2sa_training.evaluation.metrics import aggregate_runs, compute_metrics, metrics_table  # noqa: E402
from m2sa_training.training.options import parse_options  # noqa: E402
from m2sa_training.training.run import run_training  # noqa: E402
from results_file import write_results  # noqa: E402

UMSAB = REPO_ROOT.parent / "shared" / "data" / "umsab"


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "umsab.json")
    args, train_flags = parser.parse_known_args()
    if not UMSAB.is_dir():
        sys.exit(f"This benchmark reads the UMSAB tweets from {UMSAB}; that folder is missing.")
    with tempfile.TemporaryDirectory(prefix="m2sa-umsab-") as tmp:
        dataset_dir = Path(tmp) / "m2sa-umsab"
        build_dataset(dataset_dir, [umsab_source(UMSAB)], pretty_name="UMSAB (text only)", show_progress=False)
        baseline = tfidf_baseline(dataset_dir)
        options = parse_options(["--preset", "tiny", "--dataset", str(dataset_dir), "--languages", "all",
                                 "--vision-model", "none", "--output-dir", str(Path(tmp) / "out"),
                                 "--cache-dir", str(Path(tmp) / "cache"), *train_flags])
        outcome = run_training(options)
    results = {
        split: {"M2SA text-only, from scratch": outcome["summary"][split]["text-only"], "TF-IDF + LR": baseline[split],
                "majority": outcome["summary"][split]["majority"]}
        for split in ("validation", "test")
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, {"train_flags": train_flags, "options": json.loads(options.to_json()),
                             "results": results})
    print(f"UMSAB macro-F1, train flags: {' '.join(train_flags) or 'tiny preset defaults'} (the M2SA checkpoint is "
          f"the epoch with the best validation macro-F1)")
    for split, named in results.items():
        print(f"\n### {split}\n\n{metrics_table(named)}")


if __name__ == "__main__":
    main()

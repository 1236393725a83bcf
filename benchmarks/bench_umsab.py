"""Real tweets, no pretrained weights: a text-only M2SA model trained from scratch on UMSAB (8 languages) against a
TF-IDF + logistic-regression baseline, per-language macro-F1 on the validation split, in one run.

The UMSAB folders (umsab/ in the data root) are imported with the dataset builder, then
`train.py --preset tiny --dataset <built> --languages all --vision-model none` is run through the same code.

    python -m benchmarks.bench_umsab [--epochs 8] [extra train.py flags...]
"""

import json
import tempfile
from pathlib import Path

from benchmarks.harness import benchmark_parser, write_results
from benchmarks.recipes import tfidf_baseline, umsab_dataset
from m2sa_training.evaluation.reports import metrics_table
from m2sa_training.training.options import parse_options
from m2sa_training.training.run import run_training


def main():
    parser = benchmark_parser(__doc__, out="umsab.json", data_root=True)
    args, train_flags = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="m2sa-umsab-") as tmp:
        dataset_dir = umsab_dataset(Path(tmp) / "m2sa-umsab", args.data_root)
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
    write_results(args.out, {"train_flags": train_flags, "options": json.loads(options.to_json()),
                             "results": results})
    print(f"UMSAB macro-F1, train flags: {' '.join(train_flags) or 'tiny preset defaults'} (the M2SA checkpoint is "
          f"the epoch with the best validation macro-F1)")
    for split, named in results.items():
        print(f"\n### {split}\n\n{metrics_table(named)}")


if __name__ == "__main__":
    main()

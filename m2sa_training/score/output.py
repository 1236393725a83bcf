"""What `python -m m2sa_training.score` writes: labelled Parquet shards, its options, a report and a dataset card.

    OUTPUT_DIR/
        scoring_options.json          what defines the output (model, data, arithmetic, image caps); a rerun must match
        data/<split>-00000.parquet    one file per input shard: rows [k * shard_size, (k + 1) * shard_size)
        scoring_report.json           rows in and out, labels per language, image errors by reason, rows/s
        README.md                     a dataset card (`load_dataset(OUTPUT_DIR)` reads the shards as one split)

A shard is written under a hidden temporary name and renamed into place once complete, so a killed run leaves each
shard either finished or absent; a rerun computes only the absent ones, and since a shard's rows are scored the same
way whichever process, run or attempt does it, the finished output is the same bytes as an uninterrupted run's.
The report and the card are written last, once every shard is there.
"""

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import DatasetInfo

from dataset_script.card import card_metadata
from m2sa_files.atomic import atomic_file, write_text_atomically
from modeling_m2sa.errors_m2sa import M2SAError

OPTIONS_FILE = "scoring_options.json"
REPORT_FILE = "scoring_report.json"
CARD_FILE = "README.md"
DATA_DIR = "data"
OUTPUT_FORMAT = 1
"""Bumped when the shards' layout changes, so an output written by an older layout is not silently extended."""


def probability_column(label):
    return f"probability_{label}"


def output_schema(label_names, id_column=None, with_language=False, with_detected_language=False):
    """The shards' columns: the input's row index (and id, and language when it has them), the label, one probability
    per class, whether the image was used and why not, why a row got no label, and (`--detect-language`) the
    detected language and whether the model was trained on it."""
    fields = [pa.field("row_index", pa.int64())]
    if id_column is not None:
        fields.append(pa.field(id_column, pa.string()))
    if with_language:
        fields.append(pa.field("language", pa.string()))
    fields += [pa.field("label", pa.string()),
               *(pa.field(probability_column(label), pa.float32()) for label in label_names),
               pa.field("image_used", pa.bool_()), pa.field("image_error", pa.string()),
               pa.field("image_error_code", pa.string()), pa.field("unscored_reason", pa.string())]
    if with_detected_language:
        fields += [pa.field("detected_language", pa.string()), pa.field("language_in_training", pa.bool_())]
    return pa.schema(fields)


class ScoringOutput:
    """The output directory of one scoring job over one split."""

    def __init__(self, output_dir, split):
        self.root = Path(output_dir)
        self.split = split
        self.data = self.root / DATA_DIR

    def shard_path(self, index):
        return self.data / f"{self.split}-{index:05d}.parquet"

    def finished_shards(self):
        """Indices of the shards written completely (a temporary file of a killed write does not count)."""
        pattern = re.compile(rf"{re.escape(self.split)}-(\d{{5,}})\.parquet")
        names = (pattern.fullmatch(path.name) for path in self.data.glob("*.parquet")) if self.data.is_dir() else ()
        return {int(match[1]) for match in names if match}

    def check(self, identity):
        """Refuse an output directory that holds another job's output, naming what differs."""
        options_path = self.root / OPTIONS_FILE
        if options_path.is_file():
            previous = json.loads(options_path.read_text())
            changed = {key: (previous.get(key), value) for key, value in identity.items()
                       if previous.get(key) != value}  # fmt: skip
            if changed:
                differences = "; ".join(f"{key}: {old!r} before, {new!r} now" for key, (old, new) in changed.items())
                raise M2SAError(
                    f"{self.root} holds labels made with other options ({differences}). Rerun with the same options "
                    f"to finish it, or choose another --output-dir.",
                    code="output_dir_holds_other_job",
                )
        elif self.root.is_dir() and any(not path.name.startswith(".") for path in self.root.iterdir()):
            raise M2SAError(f"{self.root} is not empty and holds no {OPTIONS_FILE}; choose an empty or new "
                            f"--output-dir.", code="output_dir_not_empty")

    def claim(self, identity):
        """Record what defines this output (the main process, once `check` passed everywhere)."""
        self.data.mkdir(parents=True, exist_ok=True)
        if not (self.root / OPTIONS_FILE).is_file():
            write_text_atomically(self.root / OPTIONS_FILE, json.dumps(identity, indent=2, sort_keys=True) + "\n")

    def write_shard(self, index, table):
        with atomic_file(self.shard_path(index)) as partial:
            pq.write_table(table, partial)

    def summary(self, label_names, shards):
        """Counts over the finished `shards`: rows, labels (overall and per language), unscored rows and image
        errors by reason; each class's share estimated two ways: classify and count (`shares`) and the mean of its
        probability over the labelled rows (`mean_probability`, the better estimate from a calibrated model); with
        detected languages, the labelled rows per detected language (`unsure`: none detected) and how many are in a
        language outside the model's training languages."""
        rows, labels, per_language, unscored, image_errors, images_used = 0, Counter(), {}, Counter(), Counter(), 0
        detected, outside_training, languages_detected = Counter(), 0, False
        probability_sums = Counter()
        for index in shards:
            table = pq.read_table(self.shard_path(index))
            columns = table.to_pydict()
            rows += table.num_rows
            labels.update(label for label in columns["label"] if label is not None)
            for label in label_names:
                probability_sums[label] += sum(filter(None, columns[probability_column(label)]))
            unscored.update(reason for reason in columns["unscored_reason"] if reason is not None)
            image_errors.update(code for code in columns["image_error_code"] if code is not None)
            images_used += sum(columns["image_used"])
            for language, label in zip(columns.get("language", ()), columns["label"]):
                counts = per_language.setdefault(language, Counter())
                counts[label if label is not None else "unscored"] += 1
            languages_detected = languages_detected or "detected_language" in columns
            for language, in_training, label in zip(columns.get("detected_language", ()),
                                                    columns.get("language_in_training", ()), columns["label"]):
                if label is not None:
                    detected[language or "unsure"] += 1
                    outside_training += in_training is False
        labelled = sum(labels.values())
        languages = {}
        if languages_detected:
            languages = {"detected_languages": dict(detected.most_common()),
                         "outside_training_languages": outside_training}
        return {
            "rows_out": rows,
            "labels": {label: labels[label] for label in label_names},
            "shares": {label: labels[label] / max(1, labelled) for label in label_names},
            "mean_probability": {label: probability_sums[label] / max(1, labelled) for label in label_names},
            "unscored": dict(sorted(unscored.items())),
            "images_used": images_used,
            "image_errors": dict(sorted(image_errors.items())),
            "per_language": {language: dict(sorted(counts.items()))
                             for language, counts in sorted(per_language.items())},
            **languages,
        }

    def write_report(self, report):
        write_text_atomically(self.root / REPORT_FILE, json.dumps(report, indent=2) + "\n")

    def write_card(self, report, shards):
        shard_bytes = sum(self.shard_path(index).stat().st_size for index in shards)
        write_text_atomically(self.root / CARD_FILE, dataset_card(self.split, report, shard_bytes))


def dataset_card(split, report, shard_bytes):
    """A dataset card whose YAML `configs:` lets `load_dataset(OUTPUT_DIR)` (or the Hub) read the shards as `split`.

    `dataset_info.download_size` (the shards' bytes) is there for `load_dataset`'s cache too: for a local folder whose
    card names its data files, `datasets` (5.2) keys the cache on the card alone, not on the files' dates, so without
    it a rewritten output, or another output folder of the same name, would load the rows cached before."""
    source = report["input"]
    temperature = report.get("calibration_temperature")
    calibration = (f"this model's probabilities are divided by its calibration temperature {temperature:.3f}"
                   if temperature else "this model has no calibration temperature: its probabilities are the softmax "
                                       "as trained")
    labels = report["summary"]["labels"]
    summary = report["summary"]
    rows = "\n".join(f"| {label} | {count:,} | {summary['shares'][label]:.1%} | "
                     f"{summary['mean_probability'][label]:.1%} |" for label, count in labels.items())
    errors = ", ".join(f"{code} {count:,}" for code, count in report["summary"]["image_errors"].items()) or "none"
    unscored = ", ".join(f"{reason} {count:,}" for reason, count in report["summary"]["unscored"].items()) or "none"
    languages = ""
    if "detected_languages" in summary:
        trained = ", ".join(report.get("training_languages") or []) or "not recorded by the model"
        detected = ", ".join(f"{language} {count:,}" for language, count in summary["detected_languages"].items())
        languages = (f"\nDetected languages of the labelled rows (`unsure`: the detector was not sure): {detected}. "
                     f"Rows in a language the model was not trained on (its training languages: {trained}): "
                     f"{summary['outside_training_languages']:,}.\n")
    metadata = card_metadata({"default": {split: f"{DATA_DIR}/{split}-*.parquet"}},
                             {"default": DatasetInfo(download_size=shard_bytes)},
                             tags=["m2sa", "sentiment-analysis", "machine-labelled"])
    return f"""---
{metadata.to_yaml()}
---

# Sentiment labels for {source['dataset']} ({source['config']}, {split})

Labelled by the M2SA model `{report['model']}` ({report['backend']} backend) with `python -m m2sa_training.score`:
{report['summary']['rows_out']:,} rows, one per input row, in input order (`row_index`).

| label | rows | share of labels | mean probability |
|---|---:|---:|---:|
{rows}

The share of a class among the labels (classify and count) and the mean of its probability are two estimates of how
common it is; the mean probability is the better one when the model is calibrated ({calibration}).

Images used: {report['summary']['images_used']:,}; image errors (each such row was labelled from its text): {errors}.
Rows without a label: {unscored}.
{languages}
Columns: `row_index` (the row's position in the input split), the input's id and `language` when it has them,
`label`, one `probability_<label>` per class, `image_used`, `image_error` / `image_error_code` (why an image was not
used), `unscored_reason` (why a row has no label) and, when languages were detected, `detected_language` and
`language_in_training`. `scoring_report.json` holds the full report.
"""

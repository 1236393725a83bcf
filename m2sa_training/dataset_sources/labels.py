"""Reading a dataset's labels: class names, label strings or integers as the three sentiment ids, or numbers for
regression. A row without a readable label is refused with its reason, never dropped."""

import logging
import math
import re
from collections import Counter

import datasets

from dataset_script.schema import LABEL_NAMES
from modeling_m2sa.errors_m2sa import M2SAError

logger = logging.getLogger(__name__)


LABEL_SPELLINGS = {"negative": ("negative", "neg", "-1"), "neutral": ("neutral", "neu", "0"),
                   "positive": ("positive", "pos", "1")}  # fmt: skip
"""How label names and strings may spell each class (compared lower-cased, without surrounding spaces)."""

LABEL_IDS = {spelling: LABEL_NAMES.index(name) for name, spellings in LABEL_SPELLINGS.items() for spelling in spellings}

ACCEPTED_LABELS = (
    "ClassLabel names or strings negative/neutral/positive, neg/neu/pos or -1/0/1 (any case), integers -1/0/1; "
    "name integer labels 0, 1, 2, ... with --label-names (e.g. --label-names negative neutral positive), or read "
    "another column with --label-column"
)


def relabel(splits, label_names, where, column):
    """The splits of one config with `label` as ClassLabel(LABEL_NAMES); one mapping for all splits of the config."""
    feature = splits["train"].features["label"]
    values = {name: split["label"][:] for name, split in splits.items()}
    _refuse_missing_labels(splits, values, feature, where, column)
    counts = Counter(value for split_values in values.values() for value in split_values)
    mapping = label_mapping(feature, counts, label_names, f"{where} (column {column!r})")
    if isinstance(feature, datasets.ClassLabel) and feature.names == list(LABEL_NAMES) and all(
            mapping[value] == value for value in mapping):
        return splits  # already in the training schema: the data stays untouched
    read_as = [f"{value!r} -> {LABEL_NAMES[label]}" for value, label in mapping.items()]
    logger.info("%s: labels of column %r read as %s.", where, column, ", ".join(sorted(read_as)))
    label_feature = datasets.ClassLabel(names=list(LABEL_NAMES))
    return {name: split.remove_columns("label").add_column("label", [mapping[value] for value in values[name]],
                                                           feature=label_feature)
            for name, split in splits.items()}  # fmt: skip


def numeric_labels(splits, where, column):
    """The splits of one config with `label` as float32 values (regression); a row whose label is missing or not a
    finite number (numbers written as strings, as in a JSON file, are read) is refused, never dropped."""
    read = {}
    for name, split in splits.items():
        feature = split.features["label"]
        if isinstance(feature, datasets.ClassLabel):
            raise M2SAError(
                f"Column {column!r} of the {name} split of {where} holds sentiment classes "
                f"({', '.join(feature.names)}), not numbers: --problem-type regression needs a number per tweet. Read "
                f"a numeric column with --label-column, or train a classifier with --problem-type "
                f"single_label_classification.",
                code="non_numeric_labels",
            )
        values = [_finite_number(value) for value in split["label"][:]]
        unreadable = [row for row, value in enumerate(values) if value is None]
        if unreadable:
            examples = "; ".join(f"row {row} {split[row]['text']!r} has {_shown_value(split[row]['label'])}"
                                 for row in unreadable[:3])
            raise M2SAError(
                f"--problem-type regression needs a number in column {column!r} for every tweet, but {len(unreadable)} "
                f"of {len(values)} rows of the {name} split of {where} have none or another value (e.g. {examples}). "
                f"Rows are not dropped silently: write a number (int or float) in each, remove those rows, or read "
                f"another column with --label-column.",
                code="non_numeric_labels",
            )
        read[name] = values
    if all(split.features["label"] == datasets.Value("float32") for split in splits.values()):
        return splits  # already float32 values: the data stays untouched
    label_feature = datasets.Value("float32")
    return {name: split.remove_columns("label").add_column("label", read[name], feature=label_feature)
            for name, split in splits.items()}  # fmt: skip


def _shown_value(value):
    missing = value is None or (isinstance(value, float) and math.isnan(value))  # CSV readers give NaN for none
    return "no value" if missing else repr(value)


def _finite_number(value):
    """`value` as a float when it is a finite number (or a string spelling one), else None (missing, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _refuse_missing_labels(splits, values, feature, where, column):
    """Rows without a label (null, or a ClassLabel's -1) are an error: dropping them would change the data unseen."""
    missing = {name: [row for row, value in enumerate(split_values)
                      if value is None or (isinstance(feature, datasets.ClassLabel) and value < 0)]
               for name, split_values in values.items()}  # fmt: skip
    total = sum(len(rows) for rows in missing.values())
    if total:
        counts = ", ".join(f"{len(rows)} in {name}" for name, rows in missing.items() if rows)
        examples = [f"{name} row {row} {splits[name][row]['text']!r}" for name, rows in missing.items() for row in rows]
        raise M2SAError(
            f"{total} rows of {where} have no label in column {column!r} ({counts}; e.g. {'; '.join(examples[:3])}). "
            f"Rows are not dropped silently: label or remove them in the data, or read another column with "
            f"--label-column.",
            code="missing_labels",
        )


def label_mapping(feature, counts, label_names, where):
    """{raw label value: label id} for every value of `counts` ({value: rows}).

    ClassLabel ids are read through their names (or `label_names`), integers through `label_names` or else as -1/0/1,
    strings by their spelling (`LABEL_SPELLINGS`). Integers other than -1/0/1 need `label_names`: 0/1/2 could mean
    negative/neutral/positive or, with a binary dataset, negative/positive."""
    for name in label_names or ():
        if _spelled_label_id(name) is None:
            raise M2SAError(
                f"--label-names {' '.join(label_names)}: {name!r} is not a sentiment; use negative, neutral, positive "
                f"(or neg, neu, pos).",
                code="bad_label_names",
            )
    if isinstance(feature, datasets.ClassLabel):
        names = label_names or feature.names
        mapping = {value: _spelled_label_id(names[value]) if value < len(names) else None for value in counts}
    else:
        integers = {value: _integer(value) for value in counts}
        all_integers = None not in integers.values()
        if label_names and not all_integers:
            raise M2SAError(
                f"--label-names names integer labels 0, 1, 2, ..., but the labels of {where} are not all integers "
                f"({_listed(counts)}). Drop --label-names: label strings are read by their spelling.",
                code="bad_label_names",
            )
        if label_names:
            mapping = {value: _spelled_label_id(label_names[number]) if 0 <= number < len(label_names) else None
                       for value, number in integers.items()}  # fmt: skip
        elif all_integers:
            numbers = set(integers.values())
            if not (numbers <= {-1, 0, 1} and -1 in numbers):
                raise M2SAError(
                    f"The labels of {where} are the integers {sorted(numbers)}, which do not say which class each is "
                    f"(only -1/0/1 are read as negative/neutral/positive). Name them in order with --label-names, "
                    f"e.g. --label-names negative neutral positive for 0/1/2, or read another column with "
                    f"--label-column.",
                    code="ambiguous_labels",
                )
            mapping = {value: LABEL_IDS[str(number)] for value, number in integers.items()}
        else:
            mapping = {value: _spelled_label_id(value) if isinstance(value, str) else None for value in counts}
    unreadable = [value for value, label in mapping.items() if label is None]
    if unreadable:
        raise M2SAError(
            f"The labels of {where} cannot all be read as {'/'.join(LABEL_NAMES)}: "
            f"{_listed({value: counts[value] for value in unreadable})} cannot (values found: {_listed(counts)}). "
            f"Accepted: {ACCEPTED_LABELS}.",
            code="unreadable_labels",
        )
    return mapping


def _spelled_label_id(value):
    return LABEL_IDS.get(str(value).strip().lower())


def _integer(value):
    """`value` as an int when it is one (also 1.0 or "1"), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def _listed(counts, limit=20):
    """'value' (N rows), ... for the most frequent values of `counts`."""
    listed = ", ".join(f"{value!r} ({rows} rows)" for value, rows in Counter(counts).most_common(limit))
    return listed + (f" and {len(counts) - limit} more" if len(counts) > limit else "")

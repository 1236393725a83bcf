"""Mapping a dataset's columns onto the M2SA schema: train / validation / test under their names or aliases, and the
text, image, language, id and provenance columns under the schema's names and types."""

import logging
from pathlib import Path

import datasets

from dataset_script.schema import SPLITS
from modeling_m2sa.errors_m2sa import M2SAError

logger = logging.getLogger(__name__)


SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "development": "validation"}

ID_COLUMNS = ("tweet_id", "id", "guid")
"""Columns that identify a row, in order of preference; they order the rows when validation and test are carved."""

PROVENANCE_COLUMNS = ("source", "translated")
"""Columns of M2SA builds kept as they are when present: where a row comes from (e.g. the synthetic demo set)."""


def canonical_splits(loaded, where):
    """The train / validation / test splits of `loaded`, found under their names or aliases (`SPLIT_ALIASES`)."""
    splits, ignored = {}, []
    for name, split in loaded.items():
        canonical = SPLIT_ALIASES.get(name.lower(), name.lower())
        if canonical not in SPLITS:
            ignored.append(name)
        elif canonical in splits:
            raise M2SAError(f"{where} has two {canonical} splits ({', '.join(loaded)}); keep one of them.",
                            code="duplicate_split")
        else:
            splits[canonical] = split
    if "train" not in splits:
        raise M2SAError(
            f"{where} has no train split (its splits: {', '.join(loaded)}). Training needs one; validation and test "
            f"are carved from it when missing.",
            code="no_train_split",
        )
    if ignored:
        logger.warning("%s: split(s) %s ignored: only train, validation and test (or %s) are used.",
                       where, ", ".join(ignored), ", ".join(SPLIT_ALIASES))
    return splits


def source_columns(split, options, where):
    """{schema column: the dataset column it is read from, or None when absent}, for text, image, label, language,
    tweet_id and the provenance columns. The image and language columns may be absent only under their default names."""
    present = split.column_names
    flags = {"text": "--text-column", "image": "--image-column", "label": "--label-column",
             "language": "--language-column"}  # fmt: skip
    columns = {}
    for target, flag in flags.items():
        name = getattr(options, f"{target}_column")
        if name in present:
            columns[target] = name
        elif target in ("image", "language") and name == target:  # the default name: text-only data / config names
            columns[target] = None
        else:
            raise M2SAError(
                f"There is no column {name!r} for the {target} in {where} (its columns: {', '.join(present)}). Name "
                f"the {target} column with {flag}.",
                code="missing_column",
            )
    used = set(columns.values())
    columns["tweet_id"] = next((name for name in ID_COLUMNS if name in present and name not in used), None)
    columns.update({name: name if name in present and name not in used else None for name in PROVENANCE_COLUMNS})
    return columns


def training_columns(split, columns, language, root, where):
    """`split` with only the schema columns, under their schema names and types (labels still as in the data)."""
    sources = {target: source for target, source in columns.items() if source is not None}
    split = split.select_columns(list(sources.values()))
    split = split.rename_columns({source: target for target, source in sources.items() if source != target})
    split = _text_column(split, where)
    if "image" in split.column_names:
        split = _image_column(split, columns["image"], root, where)
    if language is not None:
        split = split.add_column("language", [language] * len(split), feature=datasets.Value("string"))
    elif split.data.column("language").null_count:
        raise M2SAError(
            f"{split.data.column('language').null_count} rows of {where} have no language in column "
            f"{columns['language']!r}. Fill it in, or name another column with --language-column.",
            code="missing_language",
        )
    for name in ("language", "tweet_id"):
        if name in split.column_names and split.features[name] != datasets.Value("string"):
            split = split.cast_column(name, datasets.Value("string"))
    return split


def _text_column(split, where):
    feature = split.features["text"]
    if not isinstance(feature, datasets.Value):
        raise M2SAError(
            f"The text column of {where} holds {feature}, not text. Name the text column with --text-column.",
            code="bad_text_column",
        )
    if feature != datasets.Value("string"):
        split = split.cast_column("text", datasets.Value("string"))
    missing = split.data.column("text").null_count
    if missing:
        logger.warning("%d rows of %s have no text; they are used with an empty text.", missing, where)
        texts = ["" if text is None else text for text in split["text"][:]]
        split = split.remove_columns("text").add_column("text", texts, feature=datasets.Value("string"))
    return split


def _image_column(split, source, root, where):
    """The image column as `datasets.Image(decode=False)`: an Image column, encoded bytes, or paths of existing files
    (relative paths start at the dataset's directory). Unreadable bytes are found per batch during training."""
    feature = split.features["image"]
    encoded = (datasets.Value("binary"), datasets.Value("large_binary"))
    image_struct = isinstance(feature, dict) and set(feature) == {"bytes", "path"}  # an Image column without its type
    if isinstance(feature, datasets.Image) or image_struct or feature in encoded:
        return split.cast_column("image", datasets.Image(decode=False))
    if feature not in (datasets.Value("string"), datasets.Value("large_string")):
        raise M2SAError(
            f"The image column {source!r} of {where} holds {feature} values, not images. Name the column holding the "
            f"images (an Image column, image bytes or image file paths) with --image-column.",
            code="bad_image_column",
        )
    values = split["image"][:]
    paths = [None if value is None else _existing_file(value, root) for value in values]
    not_files = [value for value, path in zip(values, paths) if value is not None and path is None]
    if not_files:
        examples = ", ".join(map(repr, list(dict.fromkeys(not_files))[:3]))
        raise M2SAError(
            f"The image column {source!r} of {where} holds strings that are not paths of existing files: "
            f"{len(not_files)} of {len(values)} rows, e.g. {examples}. Name the column holding the images (an Image "
            f"column, image bytes or image file paths, relative to the dataset's directory) with --image-column.",
            code="bad_image_column",
        )
    split = split.remove_columns("image").add_column("image", paths, feature=datasets.Value("string"))
    return split.cast_column("image", datasets.Image(decode=False))


def _existing_file(value, root):
    """The absolute path of the file `value` names (relative to `root`, else to the working directory), or None."""
    path = Path(value)
    candidates = [path] if path.is_absolute() else [*([root / path] if root is not None else []), path]
    return next((str(candidate.resolve()) for candidate in candidates if candidate.is_file()), None)

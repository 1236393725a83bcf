"""Carving the validation and test splits a config lacks from its train rows, by the dataset builder's rule."""

import hashlib
import logging
from pathlib import Path

from dataset_script.schema import SPLITS
from dataset_script.splits import CARVED_FRACTIONS, carve_splits

logger = logging.getLogger(__name__)


def carve_missing_splits(splits, where, id_column, by_label=True):
    """The splits with validation and test carved from train when the config lacks them (`carve_splits`): rows are
    ordered by the hash of the id column, else of each row's text and image bytes; no seed is involved. `by_label`:
    carve within each label (classes); otherwise from all rows at once (regression values, nearly all distinct)."""
    missing = [split for split in CARVED_FRACTIONS if split not in splits]
    if not missing:
        return splits
    train = splits["train"]
    ids = train["tweet_id"][:] if id_column is not None else []
    if id_column is not None and None not in ids:
        order = f"the hash of column {id_column!r}"
    else:
        ids, order = _content_ids(train), "a hash of each row's text and image bytes"
    carved = carve_splits(ids, train["label"][:] if by_label else [None] * len(train), missing)
    for split in ("train", *missing):
        splits[split] = train.select([row for row, name in enumerate(carved) if name == split])
    logger.info(
        "%s has no %s split: carved from its %d train rows%s, ordered by %s (%s); now %s.", where,
        " or ".join(missing), len(train), " per label" if by_label else "", order,
        ", ".join(f"{CARVED_FRACTIONS[split]:.0%} {split}" for split in missing),
        ", ".join(f"{split} {len(splits[split])}" for split in SPLITS))
    return {split: splits[split] for split in SPLITS}


def _content_ids(split):
    """A stable id per row from its text and image bytes, for data without an id column."""
    ids = []
    for row in split.select_columns([name for name in ("text", "image") if name in split.column_names]):
        digest = hashlib.blake2b(row["text"].encode("utf-8"), digest_size=16)
        digest.update(b"\0" + _image_bytes(row.get("image")))
        ids.append(digest.hexdigest())
    return ids


def _image_bytes(image):
    """The encoded bytes of a `datasets.Image(decode=False)` value (read from its file when it holds only a path)."""
    if image is None:
        return b""
    if image["bytes"] is not None:
        return image["bytes"]
    path = Path(image["path"] or "")
    return path.read_bytes() if path.is_file() else b""

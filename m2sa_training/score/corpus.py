"""The corpus to label: one split of one config of anything `train.py --dataset` reads, read in fixed row ranges.

Only the columns scoring needs are read: the text, the image (absent: a text-only corpus), an id (`--id-column`, else
the first of `ID_COLUMNS` present; the row index always comes along) and the language (when the data has one). A
`Dataset` is read by slicing, so a process reads only its own shards; a streamed `IterableDataset` is read once, front
to back, by every process (rows of shards that are not its own, or already finished, are passed over unprocessed).
"""

import itertools
import logging
from dataclasses import dataclass

import datasets

from modeling_m2sa.errors_m2sa import M2SAError

from ..dataset_sources import (
    ID_COLUMNS,
    config_description,
    data_root,
    dataset_configs,
    open_split,
    split_names,
)

logger = logging.getLogger(__name__)

@dataclass
class Corpus:
    """The opened split: `rows` (a `Dataset` or, streamed, an `IterableDataset`), `columns` {role: column name} for the
    roles present, `num_rows` (None when streamed, until it has been read to its end) and where relative image paths
    start (`root`)."""

    dataset: str
    config: str
    split: str
    rows: object
    columns: dict
    root: object
    num_rows: int | None
    fingerprint: str | None
    streaming: bool = False

    def shard_count(self, shard_size):
        return -(-self.num_rows // shard_size)

    def shard_rows(self, shard, shard_size):
        return min(shard_size, self.num_rows - shard * shard_size)

    def chunks(self, wanted, shard_size, chunk_size):
        """(shard index, chunk) for the shards `wanted(index)` accepts, in order; a chunk is {role: values} plus
        `row_index`, at most `chunk_size` rows of one shard (shard k holds rows [k * shard_size, (k + 1) * shard_size)).
        A streamed corpus is read to its end, and `num_rows` is set then."""
        if self.streaming:
            yield from self._streamed_chunks(wanted, shard_size, chunk_size)
            return
        for shard in filter(wanted, range(self.shard_count(shard_size))):
            stop = shard * shard_size + self.shard_rows(shard, shard_size)
            for first in range(shard * shard_size, stop, chunk_size):
                last = min(first + chunk_size, stop)
                yield shard, self._chunk(self.rows[first:last], first, last)

    def _streamed_chunks(self, wanted, shard_size, chunk_size):
        rows, position = iter(self.rows), 0
        while True:
            shard = position // shard_size
            size = min(chunk_size, (shard + 1) * shard_size - position)
            batch = list(itertools.islice(rows, size))
            if batch and wanted(shard):
                values = {column: [row.get(column) for row in batch] for column in self.columns.values()}
                yield shard, self._chunk(values, position, position + len(batch))
            position += len(batch)
            if len(batch) < size:
                break
        if position == 0:
            raise _nothing_to_label(f"the {self.split} split of {self.dataset!r}")
        self.num_rows = position

    def _chunk(self, values, first, last):
        chunk = {role: list(values[column]) for role, column in self.columns.items()}
        chunk["text"] = ["" if text is None else str(text) for text in chunk["text"]]
        chunk["row_index"] = list(range(first, last))
        return chunk


def open_corpus(dataset, dataset_config=None, split=None, streaming=False, text_column="text", image_column=None,
                id_column=None, language_column=None):
    """The `Corpus` of `split` of `dataset_config` of `dataset`; a dataset with one config (or split) needs none
    named. Columns named by the caller must exist; without `image_column` the `image` column is read when present."""
    configs = dataset_configs(dataset)
    config = _chosen("config", dataset_config, configs, dataset, "--dataset-config")
    where = config_description(dataset, config)
    split = _chosen("split", split, split_names(dataset, config), where, "--split")
    where = f"the {split} split of {where}"
    try:
        rows = open_split(dataset, config, split, streaming=streaming)
    except M2SAError as error:
        if error.code != "empty_split":
            raise
        raise _nothing_to_label(where) from error
    present = _column_names(rows, where)
    columns = {"text": _named_column(text_column, "--text-column", present, where)}
    for role, given, default, flag in (("image", image_column, "image", "--image-column"),
                                       ("id", id_column, None, "--id-column"),
                                       ("language", language_column, "language", "--language-column")):
        if given is not None:
            columns[role] = _named_column(given, flag, present, where)
        elif role == "id":
            columns[role] = next((name for name in ID_COLUMNS if name in present), None)
        elif default in present:
            columns[role] = default
    columns = {role: name for role, name in columns.items() if name is not None}
    if "image" not in columns:
        logger.info("%s has no 'image' column: text-only (name its image column with --image-column).", where)
    rows = rows.select_columns(list(dict.fromkeys(columns.values())))
    if isinstance(rows.features, datasets.Features) and isinstance(rows.features.get(columns.get("image")),
                                                                   datasets.Image):
        rows = rows.cast_column(columns["image"], datasets.Image(decode=False))
    num_rows = None if streaming else len(rows)
    if num_rows == 0:
        raise _nothing_to_label(where)
    return Corpus(dataset=dataset, config=config, split=split, rows=rows, columns=columns, root=data_root(dataset),
                  num_rows=num_rows, fingerprint=None if streaming else rows._fingerprint, streaming=streaming)


def _nothing_to_label(where):
    return M2SAError(f"{where[0].upper()}{where[1:]} has no rows: there is nothing to label. Choose another --split or "
                     f"--dataset-config, or another --dataset.", code="empty_dataset")


def _chosen(what, given, available, where, flag):
    if given is not None:
        if given not in available:
            raise M2SAError(f"{where} has no {what} {given!r}; its {what}s: {', '.join(available)}.",
                            code=f"unknown_{what}")
        return given
    if len(available) == 1:
        return available[0]
    raise M2SAError(f"{where} has {len(available)} {what}s ({', '.join(available)}); choose one with {flag}.",
                    code=f"choose_{what}")


def _column_names(rows, where):
    """The column names of a split; a stream whose features are not declared is asked for its first row."""
    if rows.column_names is not None:
        return rows.column_names
    first = next(iter(rows), None)
    if first is None:
        raise _nothing_to_label(where)
    return list(first)


def _named_column(name, flag, present, where):
    if name not in present:
        raise M2SAError(f"There is no column {name!r} in {where} (its columns: {', '.join(present)}). Name the "
                        f"column with {flag}.", code="missing_column")
    return name

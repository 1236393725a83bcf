"""Writes the screened rows of one config split as Parquet shards with the Hub features embedded.

Image bytes are read (from a path) and checked one row at a time and leave memory with their row group, so
memory does not grow with the number of images. A row whose image cannot be decoded keeps its text, gets
`image=None`, and is reported as `unreadable_image`.
"""

import io
import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from dataset_script.report import BuildReport, ReportedRow
from dataset_script.schema import FEATURES, LABEL_NAMES, TweetRecord

ROW_GROUP_MAX_ROWS = 1000
ROW_GROUP_MAX_BYTES = 8 * 2**20
DEFAULT_MAX_SHARD_BYTES = 256 * 2**20
_CHECK_SIZE = (64, 64)  # JPEGs are decoded at reduced scale: the whole stream is still read, which finds truncation


def _decode_check(image_bytes: bytes) -> None:
    with Image.open(io.BytesIO(image_bytes)) as image:
        image.draft("RGB", _CHECK_SIZE)
        image.load()


def _image_cell(record: TweetRecord, report: BuildReport) -> dict | None:
    """`{"bytes": original encoded bytes, "path": None}`, or None (no image, or an unreadable one, reported)."""
    if record.image is None:
        return None
    try:
        image_bytes = record.image if isinstance(record.image, bytes) else Path(record.image).read_bytes()
        _decode_check(image_bytes)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        where = "embedded bytes" if isinstance(record.image, bytes) else str(record.image)
        detail = f"{where}: {type(error).__name__}: {error}"
        report.warn(ReportedRow(record.tweet_id, record.config, record.source, "unreadable_image", detail))
        return None
    return {"bytes": image_bytes, "path": None}


class _ShardWriter:
    """Appends row groups to `<split>-NNNNN.parquet` files, starting a new shard once the current one holds
    `max_shard_bytes` of (uncompressed Arrow) data."""

    def __init__(self, directory: Path, split: str, max_shard_bytes: int):
        self.directory, self.split, self.max_shard_bytes = directory, split, max_shard_bytes
        self.paths: list[Path] = []
        self._writer = None
        self._shard_bytes = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None or self._shard_bytes >= self.max_shard_bytes:
            self.close()
            path = self.directory / f"{self.split}-{len(self.paths):05d}.parquet.partial"
            self.paths.append(path)
            self._writer = pq.ParquetWriter(path, FEATURES.arrow_schema)
            self._shard_bytes = 0
        self._writer.write_table(table, row_group_size=table.num_rows)
        self._shard_bytes += table.nbytes

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self) -> list[Path]:
        """Close and name the shards `<split>-00000-of-0000N.parquet`, as the Hub does."""
        self.close()
        final_paths = []
        for index, path in enumerate(self.paths):
            final = path.with_name(f"{self.split}-{index:05d}-of-{len(self.paths):05d}.parquet")
            os.replace(path, final)
            final_paths.append(final)
        return final_paths


def write_split(
    records: Iterable[TweetRecord],
    directory: Path,
    split: str,
    report: BuildReport,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    on_row=None,
) -> list[Path]:
    """Write `records` (one config, one split, in order) under `directory`; return the shard paths.

    `on_row` is called after each row (progress bars)."""
    directory.mkdir(parents=True, exist_ok=True)
    shards = _ShardWriter(directory, split, max_shard_bytes)
    row_group_max_bytes = min(ROW_GROUP_MAX_BYTES, max_shard_bytes)
    rows, buffered_bytes = [], 0
    for record in records:
        image = _image_cell(record, report)
        rows.append(
            {
                "tweet_id": record.tweet_id,
                "text": record.text,
                "image": image,
                "label": LABEL_NAMES.index(record.label),
                "language": record.language,
                "source": record.source,
                "translated": record.translated,
            }
        )
        report.count_written(record.config, split, record.label, has_image=image is not None)
        buffered_bytes += len(record.text) + (len(image["bytes"]) if image else 0)
        if len(rows) >= ROW_GROUP_MAX_ROWS or buffered_bytes >= row_group_max_bytes:
            shards.write(pa.Table.from_pylist(rows, schema=FEATURES.arrow_schema))
            rows, buffered_bytes = [], 0
        if on_row is not None:
            on_row()
    if rows:
        shards.write(pa.Table.from_pylist(rows, schema=FEATURES.arrow_schema))
    return shards.finish()

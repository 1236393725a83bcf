"""Writes the screened rows of one config split as Parquet shards with the Hub features embedded.

Image bytes are read (from a path) and checked a few rows ahead of the writer, on a small thread pool (the JPEG
decoder releases the GIL, so the checks use every core), and leave memory with their row group, so memory does not
grow with the number of images. Rows are written and reported in input order, so the output does not depend on the
number of threads. A row whose image cannot be decoded keeps its text, gets `image=None`, and is reported as
`unreadable_image`.
"""

import io
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from dataset_script.report import BuildReport, ReportedRow
from dataset_script.schema import FEATURES, LABEL_NAMES, TweetRecord

ROW_GROUP_MAX_ROWS = 1000
ROW_GROUP_MAX_BYTES = 8 * 2**20
DEFAULT_MAX_SHARD_BYTES = 256 * 2**20
# JPEGs are checked at 1/8 scale, the smallest libjpeg decodes (only the DC coefficients go through the inverse DCT):
# every scan is still entropy-decoded to the end, so truncated files fail as in a full decode.
_CHECK_SIZE = (1, 1)
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
IMAGE_CHECK_THREADS = min(8, _CORES)  # threads that read and check images (beyond a few, the writer is the bottleneck)
_ROWS_AHEAD_PER_THREAD = 8  # images read and checked ahead of the writer: bounds the image bytes held at once


def _decode_check(image_bytes: bytes) -> None:
    with Image.open(io.BytesIO(image_bytes)) as image:
        image.draft("RGB", _CHECK_SIZE)
        image.load()


def _checked_image(image: bytes | Path) -> tuple[bytes | None, str | None]:
    """(the original encoded bytes, None), or (None, why they cannot be decoded)."""
    try:
        image_bytes = image if isinstance(image, bytes) else Path(image).read_bytes()
        _decode_check(image_bytes)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        where = "embedded bytes" if isinstance(image, bytes) else str(image)
        # Pillow's own message names the in-memory file by its address, which would change the report at every build
        message = "not an image format Pillow can read" if isinstance(error, UnidentifiedImageError) else error
        return None, f"{where}: {type(error).__name__}: {message}"
    return image_bytes, None


def _with_image_cells(records: Iterable[TweetRecord], report: BuildReport) -> Iterator[tuple[TweetRecord, dict | None]]:
    """(record, `{"bytes": original encoded bytes, "path": None}` or None) in input order; None for a row without an
    image or with an unreadable one, which is reported. Images are checked on `IMAGE_CHECK_THREADS` threads."""
    rows_ahead = IMAGE_CHECK_THREADS * _ROWS_AHEAD_PER_THREAD
    pending: deque[tuple[TweetRecord, Future | None]] = deque()

    def oldest() -> tuple[TweetRecord, dict | None]:
        record, check = pending.popleft()
        if check is None:
            return record, None
        image_bytes, problem = check.result()
        if problem is not None:
            report.warn(ReportedRow(record.tweet_id, record.config, record.source, "unreadable_image", problem))
            return record, None
        return record, {"bytes": image_bytes, "path": None}

    pool = ThreadPoolExecutor(IMAGE_CHECK_THREADS, thread_name_prefix="image-check")
    try:
        for record in records:
            pending.append((record, None if record.image is None else pool.submit(_checked_image, record.image)))
            if len(pending) > rows_ahead:
                yield oldest()
        while pending:
            yield oldest()
    finally:
        pool.shutdown(cancel_futures=True)


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
    for record, image in _with_image_cells(records, report):
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

"""Builder mechanics: output directory safety, sharding of large splits, and the image checks (reduced-size
decoding that still rejects truncated files, spread over threads without changing a byte of the output)."""

import io
import threading
import time

import datasets
import numpy as np
import pytest
from PIL import Image

from dataset_script import writer
from dataset_script.builder import build_dataset
from dataset_script.demo import DEMO_SOURCE_INFO, demo_records
from dataset_script.report import BuildReport
from dataset_script.schema import LABEL_NAMES, Source, SourceInfo, TweetRecord


def _demo_source(num_train=200, num_eval=20):
    return Source(DEMO_SOURCE_INFO, demo_records(num_train, num_eval))


def test_large_split_is_written_as_several_named_shards(tmp_path):
    out = tmp_path / "out"
    build_dataset(out, [_demo_source()], max_shard_bytes=2_000, show_progress=False)
    shards = sorted(path.name for path in (out / "data" / "de").glob("train-*.parquet"))
    assert len(shards) > 1
    assert all(name.endswith(f"-of-{len(shards):05d}.parquet") for name in shards)
    ds = datasets.load_dataset(str(out), "all", cache_dir=str(tmp_path / "cache"))
    assert ds["train"].num_rows == 200


def test_rebuild_replaces_a_previous_build_completely(tmp_path):
    out = tmp_path / "out"
    build_dataset(out, [_demo_source()], show_progress=False)
    stale = out / "data" / "xx"
    stale.mkdir()
    build_dataset(out, [_demo_source(60, 6)], show_progress=False)
    assert not stale.exists()
    assert not list(tmp_path.glob(".out.*"))


def test_output_that_is_not_a_build_is_never_overwritten(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="Choose another output directory"):
        build_dataset(tmp_path, [_demo_source()], show_progress=False)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def _noise_jpeg(seed: int, progressive: bool = False, size=(640, 480)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85, progressive=progressive)
    return buffer.getvalue()


def _full_decode(image_bytes: bytes) -> None:
    with Image.open(io.BytesIO(image_bytes)) as image:
        image.load()


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_reduced_size_check_rejects_every_truncated_jpeg_a_full_decode_rejects(progressive):
    jpeg = _noise_jpeg(0, progressive)
    with Image.open(io.BytesIO(jpeg)) as image:
        image.draft("RGB", writer._CHECK_SIZE)
        assert image.size == (80, 60)  # the check really decodes at 1/8 scale
    writer._decode_check(jpeg)
    for kept in (0.1, 0.5, 0.9, 0.99, len(jpeg) - 2, len(jpeg) - 1):  # ... down to a missing end-of-image marker
        truncated = jpeg[: kept if isinstance(kept, int) else int(len(jpeg) * kept)]
        with pytest.raises(OSError, match="truncated"):
            _full_decode(truncated)
        with pytest.raises(OSError, match="truncated"):
            writer._decode_check(truncated)


def _records_with_images(tmp_path, count=60):
    """Rows with good JPEGs (bytes and paths), truncated ones, non-images and no image, interleaved."""
    records = []
    for index in range(count):
        jpeg = _noise_jpeg(index, progressive=index % 2 == 1, size=(96, 64))
        kind = index % 6
        image = {
            0: jpeg,
            1: None,
            2: jpeg[: len(jpeg) // 2],
            3: tmp_path / f"{index}.jpg",
            4: b"not an image",
            5: tmp_path / f"{index}.jpg",
        }[kind]
        if kind in (3, 5):
            image.write_bytes(jpeg if kind == 3 else jpeg[:-1])
        records.append(
            TweetRecord(
                tweet_id=str(index),
                text=f"tweet number {index}",
                label=LABEL_NAMES[index % 3],
                config="en",
                language="en",
                source="test",
                image=image,
            )
        )
    return records


_TEST_SOURCE_INFO = SourceInfo("test", "Synthetic rows for builder tests.", "CC0", "")


def _files(directory):
    return {path.relative_to(directory): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def overlapping_image_checks(monkeypatch):
    """Record the most image checks that ran at once (in a list, updated as the build runs); each check lasts at least
    10 ms, so checks handed to several threads overlap."""
    check, lock = writer._checked_image, threading.Lock()
    running, most = [0], [0]

    def timed_check(image):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.01)
            return check(image)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(writer, "_checked_image", timed_check)
    return most


def test_threaded_image_checks_write_the_bytes_of_a_serial_build(tmp_path, monkeypatch):
    records = _records_with_images(tmp_path)
    most_at_once = overlapping_image_checks(monkeypatch)
    monkeypatch.setattr(writer, "IMAGE_CHECK_THREADS", 1)
    serial = build_dataset(tmp_path / "serial", [Source(_TEST_SOURCE_INFO, records)], show_progress=False)
    assert most_at_once == [1]
    monkeypatch.setattr(writer, "IMAGE_CHECK_THREADS", 4)
    monkeypatch.setattr(writer, "_ROWS_AHEAD_PER_THREAD", 2)
    threaded = build_dataset(tmp_path / "threaded", [Source(_TEST_SOURCE_INFO, records)], show_progress=False)
    assert 1 < most_at_once[0] <= 4  # the checks ran on the threads, at once

    assert _files(tmp_path / "threaded") == _files(tmp_path / "serial")
    unreadable = [record.tweet_id for record in records if int(record.tweet_id) % 6 in (2, 4, 5)]
    assert serial.to_dict()["warnings_by_reason"] == {"unreadable_image": len(unreadable)}
    assert sorted(row.tweet_id for row in threaded.warnings) == sorted(unreadable)
    ds = datasets.load_dataset(str(tmp_path / "threaded"), "en", cache_dir=str(tmp_path / "cache"))
    ds = ds.cast_column("image", datasets.Image(decode=False))
    images = {row["tweet_id"]: row["image"] for split in ds.values() for row in split}
    expected = {record.tweet_id: record.image for record in records}
    for tweet_id, image in images.items():
        kind = int(tweet_id) % 6
        if kind == 0:
            assert image["bytes"] == expected[tweet_id]
        elif kind == 3:
            assert image["bytes"] == expected[tweet_id].read_bytes()
        else:
            assert image is None


def test_images_are_checked_a_bounded_number_of_rows_ahead(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "IMAGE_CHECK_THREADS", 2)
    monkeypatch.setattr(writer, "_ROWS_AHEAD_PER_THREAD", 3)
    records = _records_with_images(tmp_path, count=30)
    pulled = []

    def counted():
        for record in records:
            pulled.append(record)
            yield record

    rows = writer._with_image_cells(counted(), BuildReport())
    for written in range(len(records)):
        record, _ = next(rows)
        assert record is records[written]
        assert len(pulled) <= written + 1 + 2 * 3  # never more than 6 images read ahead of the writer
    assert next(rows, None) is None

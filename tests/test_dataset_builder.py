"""Builder mechanics: output directory safety and sharding of large splits."""

import datasets
import pytest

from dataset_script.builder import build_dataset
from dataset_script.demo import DEMO_SOURCE_INFO, demo_records
from dataset_script.schema import Source


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

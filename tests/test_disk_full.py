"""A full disk, for real: a tmpfs of a few hundred KiB or MiB mounted for the test (root only; skipped elsewhere).

Each library's own error on it is recognised by the one rule (`m2sa_files.disk_full`), and each command (train.py,
the scorer, the dataset builder) stops with the `disk_full` message, exit status 1 and no traceback, leaving no
half-written file, and continues once there is room.
"""

import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from conftest import REPO_ROOT, TOKENIZER_TEXTS
from m2sa_files.atomic import is_partial
from m2sa_files.disk_full import full_disk_failure, is_disk_full
from m2sa_training.score.run import main

DISK_FULL_MESSAGE = "error: The disk is full: "


@pytest.fixture
def small_disk(tmp_path):
    """`mount(size, name)`: a new tmpfs of `size` ("64k", "4m") at `tmp_path/name`; unmounted when the test ends."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root on Linux and the `mount` command (run the tests as root, with "
                    "util-linux's mount installed: apt-get install -y mount, to fill a real disk)")
    mounted = []

    def mount(size, name="disk"):
        directory = tmp_path / name
        directory.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"this machine refuses to mount a tmpfs ({result.stderr.strip()}); run the tests as root where "
                        f"mounting is allowed (a container needs CAP_SYS_ADMIN: docker run --cap-add SYS_ADMIN) to "
                        f"fill a real disk")
        mounted.append(directory)
        return directory

    try:
        yield mount
    finally:
        gc.collect()  # a failed torch writer, kept alive by its exception's frames, holds its file open
        for directory in reversed(mounted):
            if subprocess.run(["umount", str(directory)]).returncode != 0:
                subprocess.run(["umount", "--lazy", str(directory)], check=True)


def resize(disk, size):
    """Make room on `disk`, as a user freeing space would."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)


def hidden_leftovers(directory):
    return [path for path in Path(directory).rglob("*") if is_partial(path) or path.name.endswith(".partial")]


# ------------------------------------------------------------------------------------------------- the rule itself

RANDOM = np.random.default_rng(0).random(100_000)  # 800 KB that no compression shrinks below 64 KiB

WRITERS = {
    # how each library writes, to `path`, more than a 64 KiB disk holds
    "open().write": lambda path: path.write_bytes(RANDOM.tobytes()),
    "shutil.copy": lambda path: shutil.copy(path.parent.parent / "source.bin", path),
    "pyarrow.parquet.write_table": lambda path: pq.write_table(pa.table({"x": RANDOM}), path),
    "pyarrow.parquet.ParquetWriter": lambda path: _parquet_writer(path),
    "safetensors save_file": lambda path: save_file({"x": torch.from_numpy(RANDOM)}, path),
    "torch.save": lambda path: torch.save({"x": torch.from_numpy(RANDOM)}, path),
    "torch.save to a file object": lambda path: _torch_save_to_file_object(path),
}
FAILURE_TYPES = {  # which exception of each library's says the disk is full (the one raised, or one in its chain)
    "open().write": "OSError", "shutil.copy": "OSError", "pyarrow.parquet.write_table": "OSError",
    "pyarrow.parquet.ParquetWriter": "OSError", "safetensors save_file": "SafetensorError",
    "torch.save": "RuntimeError", "torch.save to a file object": "OSError",
}  # fmt: skip


def _parquet_writer(path):
    with pq.ParquetWriter(path, pa.schema([("x", pa.float64())])) as writer:
        writer.write_table(pa.table({"x": RANDOM}))


def _torch_save_to_file_object(path):
    with open(path, "wb") as file:
        torch.save({"x": torch.from_numpy(RANDOM)}, file)


def raised_by(write, path):
    with pytest.raises(Exception) as raised:
        WRITERS[write](path)
    return raised.value


@pytest.mark.parametrize("write", WRITERS)
def test_what_each_library_raises_on_a_full_disk_is_a_full_disk(write, small_disk, tmp_path):
    (tmp_path / "source.bin").write_bytes(RANDOM.tobytes())
    error = raised_by(write, small_disk("64k") / "file")
    failure = full_disk_failure(error)
    assert failure is not None, f"{write} raised {error!r} (context {error.__context__!r}), not seen as a full disk"
    assert type(failure).__name__ == FAILURE_TYPES[write]


@pytest.mark.parametrize("write", WRITERS)
def test_the_same_libraries_failing_for_another_reason_are_not_a_full_disk(write, tmp_path):
    (tmp_path / "source.bin").write_bytes(RANDOM.tobytes())
    error = raised_by(write, tmp_path / "no such folder" / "file")
    assert not is_disk_full(error), repr(error)


# --------------------------------------------------------------------------------------------------------- commands

def run(*command):
    return subprocess.run([sys.executable, *map(str, command)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def assert_stopped_on_the_full_disk(result):
    assert result.returncode == 1, result.stderr[-3000:]
    assert DISK_FULL_MESSAGE in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr[result.stderr.index(DISK_FULL_MESSAGE):]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    from dataset_script.demo import ensure_demo_dataset

    return ensure_demo_dataset(tmp_path_factory.mktemp("disk-full") / "demo", num_train=120, num_eval=30)


def test_train_py_stops_on_a_full_disk_keeping_only_complete_checkpoints(small_disk, small_demo, tmp_path):
    # 4 MiB hold the tiny towers and the first best model, not the first checkpoint (torch's zip writer, which
    # reports no errno, through Accelerate's save_state).
    output_dir = small_disk("4m") / "out"
    result = run("train.py", "--dataset", small_demo, "--cache-dir", tmp_path / "cache", "--output-dir", output_dir,
                 "--modalities", "multimodal", "--num-epochs", "1", "--max-length", "32", "--batch-size", "16")
    message = assert_stopped_on_the_full_disk(result)
    assert "--output-dir" in message and "--resume-from-checkpoint latest" in message
    assert hidden_leftovers(output_dir) == []
    for checkpoint in (output_dir / "runs" / "multimodal-seed42" / "checkpoints").glob("*"):
        assert (checkpoint / "trainer_state.json").is_file()


def test_the_scorer_stops_on_a_full_disk_and_finishes_once_there_is_room(small_disk, saved_tiny_model_dir, tmp_path):
    rows = [{"id": os.urandom(16).hex(), "text": TOKENIZER_TEXTS[index % len(TOKENIZER_TEXTS)]} for index in range(600)]
    corpus = tmp_path / "tweets.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    disk = small_disk("16k")  # the options file, not the shard (pyarrow's write)
    output_dir = disk / "labels"
    flags = [str(flag) for flag in ("--model", saved_tiny_model_dir, "--dataset", corpus, "--output-dir", output_dir,
                                    "--shard-size", "600")]

    message = assert_stopped_on_the_full_disk(run("-m", "m2sa_training.score", *flags))
    assert "--output-dir" in message and "labels only the shards that are missing" in message
    assert sorted(path.name for path in output_dir.rglob("*")) == ["data", "scoring_options.json"]

    resize(disk, "1m")
    main(flags)  # the same command again (in this process)
    assert pq.read_table(output_dir / "data" / "train-00000.parquet").num_rows == len(rows)
    assert hidden_leftovers(output_dir) == []


def test_the_builder_stops_on_a_full_disk_keeping_the_previous_build(small_disk):
    out = small_disk("1m") / "demo"
    previous = run("dataset_script/build.py", "--out", out, "--demo", "--demo-train", "40", "--demo-eval", "10",
                   "--no-progress")
    assert previous.returncode == 0, previous.stderr[-3000:]
    report = (out / "build_report.json").read_text()

    message = assert_stopped_on_the_full_disk(run("dataset_script/build.py", "--out", out, "--demo", "--no-progress"))
    assert "--out" in message
    assert (out / "build_report.json").read_text() == report
    assert hidden_leftovers(out.parent) == []

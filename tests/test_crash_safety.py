"""A kill at any instant leaves files the next command can use.

Each write of a training run or a dataset build is killed (SIGKILL) just before its rename into place, i.e. when
the temporary file or folder is complete but not yet committed: the production code has no test hooks, a wrapper
process patches `os.rename` / `os.replace`. Resuming with `--resume-from-checkpoint latest` then ends with exactly
the metrics of an uninterrupted run, and a rerun of a killed build gives the same bytes as an uninterrupted build.
"""

import errno
import json
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO_ROOT
from m2sa_files.atomic import is_partial
from m2sa_training.training.options import parse_options
from m2sa_training.training.run import run_training
from modeling_m2sa.saved_folder_m2sa import damaged_safetensors_files

KILL_AT_RENAME = (
    "import os, re, runpy, signal, sys\n"
    "script, pattern, nth = sys.argv[1], re.compile(sys.argv[2]), int(sys.argv[3])\n"
    "matches = 0\n"
    "def killing(rename):\n"
    "    def rename_or_die(source, target, *args, **kwargs):\n"
    "        global matches\n"
    "        if pattern.search(f'{os.fspath(source)} -> {os.fspath(target)}'):\n"
    "            matches += 1\n"
    "            if matches == nth:\n"
    "                os.kill(os.getpid(), signal.SIGKILL)\n"
    "        return rename(source, target, *args, **kwargs)\n"
    "    return rename_or_die\n"
    "os.rename, os.replace = killing(os.rename), killing(os.replace)\n"
    "sys.argv = [script, *sys.argv[4:]]\n"
    "runpy.run_path(script, run_name='__main__')\n"
)


def run_killed_at_rename(pattern, nth, script, *args):
    """Run `script args` in a new process that SIGKILLs itself just before the `nth` rename whose 'source -> target'
    matches the regular expression `pattern`; fail if it ends otherwise."""
    result = subprocess.run([sys.executable, "-c", KILL_AT_RENAME, script, pattern, str(nth), *map(str, args)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == -signal.SIGKILL, f"not killed at rename {pattern!r} #{nth}: {result.stderr[-3000:]}"


def files_of(directory):
    """{relative path: bytes} of every file under `directory`."""
    directory = Path(directory)
    return {path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def assert_no_half_written_file(directory):
    """Every JSON file parses and every safetensors file is whole, outside the temporary names of killed writes."""
    for path in Path(directory).rglob("*"):
        if any(is_partial(part) for part in path.relative_to(directory).parts):
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.is_dir():
            assert not damaged_safetensors_files(path), path


# ---------------------------------------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    from dataset_script.demo import ensure_demo_dataset

    return str(ensure_demo_dataset(tmp_path_factory.mktemp("crash") / "m2sa-demo-crash", num_train=240, num_eval=60))


def training_flags(dataset, work_dir):
    # Frozen image tower: its features go through the feature cache, whose writes are killed too.
    return ["--dataset", dataset, "--cache-dir", str(work_dir / "cache"), "--num-epochs", "3", "--batch-size", "16",
            "--modalities", "multimodal", "--max-length", "32", "--freeze-vision-model",
            "--early-stopping-patience", "9"]


def final_outputs(output_dir):
    """What a finished run reports: the comparison, the run's results (without timings) and the exported weights."""
    run = json.loads((output_dir / "runs" / "multimodal-seed42" / "results.json").read_text())
    history = [{key: value for key, value in epoch.items() if key != "train_seconds"} for epoch in run["history"]]
    return {"comparison": json.loads((output_dir / "comparison.json").read_text()),
            "evaluation": json.loads((output_dir / "evaluation.json").read_text()),
            "results": run["results"], "best_epoch": run["best_epoch"], "history": history}


@pytest.fixture(scope="module")
def uninterrupted(small_demo, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("uninterrupted")
    run_training(parse_options([*training_flags(small_demo, work_dir), "--output-dir", str(work_dir / "out")]))
    return work_dir / "out"


TRAINING_WRITES = {
    # write: (regular expression of its rename 'source -> target', which such rename is killed)
    "run_config.json": (r"-> .*/out/run_config\.json$", 1),
    "text tower with its tokenizer": (r"/\.text-tower\.partial -> ", 1),
    "vision tower with its image processor": (r"/\.vision-tower\.partial -> ", 1),
    "feature-cache entry": (r"\.pt\.partial-\d+ -> ", 2),
    "best model, old one set aside": (r"/best -> ", 1),  # the second save of best/, over the first one
    "checkpoint": (r"/\.epoch-2\.partial -> ", 1),
    "results.json": (r"-> .*/results\.json$", 1),
    "reports (comparison.json)": (r"/\.staged\.partial/comparison\.json -> ", 1),
    "exported model (model.safetensors)": (r"/\.staged\.partial/model\.safetensors -> ", 1),
}


@pytest.mark.parametrize("write", TRAINING_WRITES)
def test_a_run_killed_inside_a_write_resumes_to_the_uninterrupted_result(write, small_demo, uninterrupted, tmp_path,
                                                                         caplog):
    flags = [*training_flags(small_demo, tmp_path), "--output-dir", str(tmp_path / "out"),
             "--resume-from-checkpoint", "latest"]  # `latest` with no checkpoint yet starts afresh
    pattern, nth = TRAINING_WRITES[write]
    run_killed_at_rename(pattern, nth, "train.py", *flags)
    assert_no_half_written_file(tmp_path / "out")

    checkpoints = tmp_path / "out" / "runs" / "multimodal-seed42" / "checkpoints"
    if write == "checkpoint":
        # What a run killed while saving left before checkpoints were renamed into place: a folder under the final
        # name without its trainer state. `latest` skips it with a warning.
        assert not (checkpoints / "epoch-2").exists()
        assert (checkpoints / ".epoch-2.partial" / "trainer_state.json").is_file()  # complete, not yet renamed
        (checkpoints / ".epoch-2.partial").rename(checkpoints / "epoch-2")
        (checkpoints / "epoch-2" / "trainer_state.json").unlink()

    with caplog.at_level(logging.WARNING, logger="m2sa_training"):
        run_training(parse_options(flags))
    if write == "checkpoint":
        assert f"Skipping checkpoint {checkpoints / 'epoch-2'}" in caplog.text
    assert final_outputs(tmp_path / "out") == final_outputs(uninterrupted)
    expected = load_file(uninterrupted / "model.safetensors")
    resumed = load_file(tmp_path / "out" / "model.safetensors")
    assert expected.keys() == resumed.keys() and all(torch.equal(expected[key], resumed[key]) for key in expected)


def full_disk_at(write, monkeypatch):
    """Make the disk fill up while `write` ("checkpoint": epoch 2's checkpoint; "best model": the second save of
    best/) is half written: its files are written, then the save fails with ENOSPC."""
    from accelerate import Accelerator

    import m2sa_training.training.loop

    def out_of_space(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    if write == "checkpoint":
        save_state = Accelerator.save_state

        def filling_save_state(self, output_dir=None, **kwargs):
            saved = save_state(self, output_dir, **kwargs)
            if Path(output_dir).name == ".epoch-2.partial":
                out_of_space(Path(output_dir) / "trainer_state.json")
            return saved

        monkeypatch.setattr(Accelerator, "save_state", filling_save_state)
    else:
        save_exported_model, calls = m2sa_training.training.loop.save_exported_model, []

        def filling_save(model, directory, options):
            save_exported_model(model, directory, options)
            calls.append(directory)
            if len(calls) == 2:
                out_of_space(directory / "model.safetensors")

        monkeypatch.setattr(m2sa_training.training.loop, "save_exported_model", filling_save)


def improving_epochs(history):
    """The epochs whose validation macro-F1 beat every earlier one (those that saved best/)."""
    best, epochs = -1.0, []
    for epoch in history:
        if epoch["validation_macro_f1"] > best:
            best = epoch["validation_macro_f1"]
            epochs.append(epoch["epoch"])
    return epochs


@pytest.mark.parametrize("write", ["checkpoint", "best model"])
def test_a_full_disk_stops_with_what_to_do_and_resumes_to_the_uninterrupted_result(write, small_demo, uninterrupted,
                                                                                   tmp_path, monkeypatch):
    from modeling_m2sa.errors_m2sa import M2SAError

    flags = [*training_flags(small_demo, tmp_path), "--output-dir", str(tmp_path / "out")]
    run_dir = tmp_path / "out" / "runs" / "multimodal-seed42"
    with monkeypatch.context() as patches:
        full_disk_at(write, patches)
        with pytest.raises(M2SAError) as error:
            run_training(parse_options(flags))
    target = run_dir / "checkpoints" / "epoch-2" if write == "checkpoint" else run_dir / "best"
    assert error.value.code == "disk_full"
    message = str(error.value)
    assert f"saving {target} failed (OSError: [Errno {errno.ENOSPC}] No space left on device" in message
    assert "--save-total-limit" in message and "--output-dir" in message
    assert "--resume-from-checkpoint latest" in message
    # Only complete checkpoints (and the previous best model) are left: no half-written folder.
    history = json.loads((uninterrupted / "runs" / "multimodal-seed42" / "results.json").read_text())["history"]
    stopped_in_epoch = 2 if write == "checkpoint" else improving_epochs(history)[1]
    checkpoints = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    assert checkpoints == [f"epoch-{epoch}" for epoch in range(1, stopped_in_epoch)]
    assert sorted(path.name for path in run_dir.iterdir()) == ["best", "checkpoints"]
    assert not damaged_safetensors_files(run_dir / "best")

    # The rerun the message asks for, keeping one checkpoint besides the best one.
    run_training(parse_options([*flags, "--resume-from-checkpoint", "latest", "--save-total-limit", "1"]))
    assert final_outputs(tmp_path / "out") == final_outputs(uninterrupted)
    best_epoch = json.loads((run_dir / "results.json").read_text())["best_epoch"]
    assert {path.name for path in (run_dir / "checkpoints").iterdir()} == {"epoch-3", f"epoch-{best_epoch}"}


def test_an_explicitly_named_incomplete_checkpoint_is_refused(uninterrupted, small_demo, tmp_path):
    incomplete = tmp_path / "epoch-3"
    shutil.copytree(uninterrupted / "runs" / "multimodal-seed42" / "checkpoints" / "epoch-3", incomplete)
    (incomplete / "trainer_state.json").unlink()
    options = parse_options([*training_flags(small_demo, tmp_path), "--output-dir", str(tmp_path / "out"),
                             "--resume-from-checkpoint", str(incomplete)])
    with pytest.raises(ValueError, match=r"epoch-3' is incomplete or corrupt .*trainer_state\.json"):
        run_training(options)


def test_latest_checkpoint_skips_incomplete_ones(uninterrupted, tmp_path, caplog):
    from m2sa_training.training.loop import latest_checkpoint

    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted / "runs" / "multimodal-seed42" / "checkpoints", run_dir / "checkpoints")
    (run_dir / "checkpoints" / "epoch-3" / "model.safetensors").unlink()  # weights missing
    (run_dir / "checkpoints" / "epoch-2" / "trainer_state.json").write_text('{"epoch": 2')  # cut short
    (run_dir / "checkpoints" / ".epoch-4.partial").mkdir()  # a save killed before its rename
    with caplog.at_level(logging.WARNING, logger="m2sa_training"):
        assert latest_checkpoint(run_dir) == run_dir / "checkpoints" / "epoch-1"
    assert "epoch-3, which is incomplete or corrupt (no model weights)" in caplog.text
    assert "epoch-2, which is incomplete or corrupt" in caplog.text
    for checkpoint in ("epoch-1", "epoch-2", "epoch-3"):
        shutil.rmtree(run_dir / "checkpoints" / checkpoint)
    assert latest_checkpoint(run_dir) is None  # nothing complete: the run starts afresh


# ----------------------------------------------------------------------------------------------------- dataset builds

DEMO_SIZE = ["--demo", "--demo-train", "40", "--demo-eval", "10", "--no-progress"]

BUILD_WRITES = {
    # write: (regular expression of its rename 'source -> target', which such rename is killed, previous build there,
    # what the kill leaves at the build's path: the new build is written aside, so until the two renames of the swap
    # the previous build stays; killed between them (the previous one set aside, the new one not yet in), nothing)
    "shard, first build": (r"\.parquet\.partial -> ", 3, False, "nothing"),
    "shard, rebuild": (r"\.parquet\.partial -> ", 3, True, "the previous build"),
    "previous build set aside": (r"/m2sa-build-[a-z-]+ -> ", 1, True, "the previous build"),
    "new build moved in, first build": (r"\.partial-\d+ -> .*/m2sa-build-[a-z-]+$", 1, False, "nothing"),
    "new build moved in, rebuild": (r"\.partial-\d+ -> .*/m2sa-build-[a-z-]+$", 1, True, "nothing"),
}


@pytest.fixture(scope="module")
def reference_build(tmp_path_factory):
    from dataset_script.demo import build_demo_dataset

    return files_of(build_demo_dataset(tmp_path_factory.mktemp("reference") / "reference", 40, 10, seed=1))


@pytest.mark.parametrize("write", BUILD_WRITES)
def test_a_build_killed_inside_a_write_leaves_the_previous_build_or_nothing(write, reference_build, tmp_path):
    import datasets
    from dataset_script.demo import build_demo_dataset, ensure_demo_dataset

    pattern, nth, has_previous, left = BUILD_WRITES[write]
    # A name per case: `datasets` caches local datasets by directory name and file dates.
    out = tmp_path / f"m2sa-build-{write.replace(',', '').replace(' ', '-')}"
    previous = files_of(build_demo_dataset(out, 40, 10, seed=0)) if has_previous else None
    run_killed_at_rename(pattern, nth, "dataset_script/build.py", "--out", out, *DEMO_SIZE, "--seed", "1")

    if left == "the previous build":
        assert out.is_dir() and files_of(out) == previous
    else:
        assert not out.exists()
    ensure_demo_dataset(out, 40, 10, seed=1)  # the rerun finishes the build
    assert files_of(out) == reference_build
    assert [path.name for path in tmp_path.iterdir()] == [out.name]  # what the killed build left is gone
    loaded = datasets.load_dataset(str(out), "all", cache_dir=str(tmp_path / "cache"))
    assert {split: rows.num_rows for split, rows in loaded.items()} == {"train": 40, "validation": 10, "test": 10}


def test_leftovers_of_killed_writers_go_and_those_of_running_ones_stay(tmp_path):
    from m2sa_files.atomic import partial_path, remove_leftovers

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".m2sa.partial-{int(finished.stdout)}"
    running = partial_path(tmp_path / "m2sa")  # this process's
    for leftover in (dead, running, tmp_path / ".m2sa.partial"):
        (leftover / "data").mkdir(parents=True)
    (tmp_path / f".m2sa.partial-{int(finished.stdout)}.previous").write_text("set aside by a killed swap")
    remove_leftovers(tmp_path / "m2sa")
    assert [path.name for path in tmp_path.iterdir()] == [running.name]

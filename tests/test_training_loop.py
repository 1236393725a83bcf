"""The training loop's bookkeeping without training: checkpoint rotation, run identity across versions, and how
train.py and the grid show user errors (no traceback) and bugs (with one)."""

import json

import pytest

from m2sa_training.training.options import TrainingOptions, parse_options
from modeling_m2sa.errors_m2sa import M2SAError


def make_checkpoints(run_dir, epochs):
    for epoch in epochs:
        (run_dir / "checkpoints" / f"epoch-{epoch}").mkdir(parents=True)
        (run_dir / "checkpoints" / f"epoch-{epoch}" / "trainer_state.json").write_text("{}")


def checkpoint_names(run_dir):
    return sorted((path.name for path in (run_dir / "checkpoints").iterdir()), key=lambda name: int(name[6:]))


def test_save_total_limit_keeps_the_newest_checkpoints_and_the_best_one(tmp_path):
    from m2sa_training.training.loop import remove_old_checkpoints

    make_checkpoints(tmp_path, range(1, 6))
    remove_old_checkpoints(tmp_path, None, best_epoch=2)  # the default: keep every checkpoint
    assert checkpoint_names(tmp_path) == ["epoch-1", "epoch-2", "epoch-3", "epoch-4", "epoch-5"]
    remove_old_checkpoints(tmp_path, 2, best_epoch=2)
    assert checkpoint_names(tmp_path) == ["epoch-2", "epoch-4", "epoch-5"]  # nothing else, no hidden leftovers
    make_checkpoints(tmp_path, [6])
    remove_old_checkpoints(tmp_path, 1, best_epoch=6)  # the best is the newest: one checkpoint is left
    assert checkpoint_names(tmp_path) == ["epoch-6"]


def test_save_total_limit_and_max_grad_norm_options():
    assert parse_options([]).save_total_limit is None
    assert parse_options(["--save-total-limit", "2"]).save_total_limit == 2
    assert parse_options(["--max-grad-norm", "0"]).max_grad_norm == 0.0
    with pytest.raises(M2SAError, match="--save-total-limit must be at least 1, got 0") as error:
        parse_options(["--save-total-limit", "0"])
    assert error.value.code == "bad_option"
    with pytest.raises(M2SAError, match=r"--max-grad-norm must be positive \(or 0 for no clipping\), got -1.0"):
        parse_options(["--max-grad-norm", "-1"])


def test_a_saved_run_differs_in_the_options_it_sets_differently_or_does_not_name(tmp_path):
    from m2sa_training.training.run import options_changed_since

    saved = json.loads(TrainingOptions().to_json())
    config = tmp_path / "run_config.json"
    config.write_text(json.dumps(saved))
    assert options_changed_since(config, parse_options([])) == []
    assert options_changed_since(config, parse_options(["--max-grad-norm", "0"])) == ["max_grad_norm"]
    # Where checkpoints are kept is not part of what a run computes: resuming may change it.
    assert options_changed_since(config, parse_options(["--save-total-limit", "1"])) == []
    del saved["max_grad_norm"]
    config.write_text(json.dumps(saved))
    assert options_changed_since(config, parse_options([])) == ["max_grad_norm"]


@pytest.fixture
def train_main(monkeypatch):
    """train.main, leaving logging and progress bars of this process as they were."""
    import logging

    import transformers

    import train

    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    monkeypatch.setattr(logging.getLogger("m2sa_training"), "level", logging.getLogger("m2sa_training").level)
    monkeypatch.setattr(transformers.utils.logging, "disable_progress_bar", lambda: None)
    return train


def test_train_py_shows_a_user_error_without_a_traceback(train_main, monkeypatch):
    with pytest.raises(SystemExit) as exit_info:  # the message alone on stderr, exit status 1
        train_main.main(["--batch-size", "0"])
    assert exit_info.value.code == "error: --batch-size must be at least 1, got 0."

    def disk_full(options):
        raise M2SAError("The disk is full: ...", code="disk_full")

    monkeypatch.setattr(train_main, "run_training", disk_full)
    with pytest.raises(SystemExit) as exit_info:
        train_main.main([])
    assert exit_info.value.code == "error: The disk is full: ..."


def test_train_py_keeps_the_traceback_of_anything_else(train_main, monkeypatch):
    def bug(options):
        raise ValueError("not a mistake of the user's")

    monkeypatch.setattr(train_main, "run_training", bug)
    with pytest.raises(ValueError, match="not a mistake of the user's"):  # not turned into a one-line exit
        train_main.main([])


def test_the_grid_shows_a_user_error_without_a_traceback_and_keeps_that_of_a_bug(tmp_path, monkeypatch):
    import m2sa_training.grid.runner as grid

    config = tmp_path / "grid.yaml"
    config.write_text("text_towers: [tiny]\nimage_towers: [tiny]\nmodes: [sideways]\nlanguages: [en]\nseeds: [1]\n")
    with pytest.raises(SystemExit) as exit_info:
        grid.main(["--config", str(config), "--dry-run"])
    assert exit_info.value.code.startswith("error: Unknown modes ['sideways']")

    def bug(path):
        raise KeyError("text_towers")

    monkeypatch.setattr(grid, "load_grid_config", bug)
    with pytest.raises(KeyError):
        grid.main(["--config", str(config), "--dry-run"])

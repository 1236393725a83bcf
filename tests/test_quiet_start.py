"""The commands start quietly: what libraries print at import and says nothing about M2SA's work (torchao's kernels
that do not load on this install, torch's deprecation notes to torchao) is dropped; anything else still shows."""

import importlib.util
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def run(*arguments):
    return subprocess.run([sys.executable, *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_train_py_prints_only_its_own_text():
    result = run("train.py", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("usage: train.py")


def test_the_scorer_and_the_grid_import_quietly():
    """What `python -m m2sa_training.score` and `... .grid` import before their own work (transformers' pipeline and
    model code included) prints nothing."""
    result = run("-c", "import m2sa_training.score.run, m2sa_training.grid.runner\n"
                       "from transformers import pipeline\n"
                       "import transformers.modeling_utils\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_the_space_starts_quietly_from_a_checkout():
    result = run("space/app.py", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("usage: app.py")


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao is not installed: no noise to drop")
def test_torchao_is_imported_and_its_other_warnings_still_show():
    result = run("-c", "import m2sa_training, sys, logging\n"
                       "import transformers.modeling_utils\n"
                       "assert 'torchao' in sys.modules  # transformers' quantizers imported it\n"
                       "logging.getLogger('torchao').warning('a torchao warning about your model')\n"
                       "logging.getLogger('torch.utils._pytree').warning('another pytree warning')\n")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()  # torch's loggers print with their own prefix
    assert len(lines) == 2 and lines[0] == "a torchao warning about your model"
    assert lines[1].endswith("] another pytree warning")

"""Command line of dataset_script/build.py and the push to the Hub, tested up to the upload call."""

import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from dataset_script import build, push
from dataset_script.demo import DEMO_LANGUAGES, build_demo_dataset
from conftest import REPO_ROOT



class RecordingHfApi:
    """Stands in for huggingface_hub.HfApi: records the calls instead of talking to the Hub."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return "commit-info"


@pytest.fixture
def dataset_small_demo(tmp_path):
    return build_demo_dataset(tmp_path / "demo", num_train=30, num_eval=6)


def test_help_runs_as_a_script_and_documents_every_flag():
    result = subprocess.run(
        [sys.executable, "dataset_script/build.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    for flag in ("--out", "--manifest", "--dump", "--umsab", "--mvsa", "--demo", "--push-to-hub", "--private", "--token"):
        assert flag in result.stdout
    assert "tweets.jsonl" in result.stdout and "images/<tweet_id>.<ext>" in result.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "x", "--manifest", "m.zip"], "--manifest and --dump go together"),
        (["--out", "x", "--demo", "--umsab", "u"], "--demo builds the synthetic set alone"),
        (["--out", "x"], "nothing to do"),
    ],
)
def test_bad_flag_combinations_are_explained(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_from_the_command_line(tmp_path, capsys):
    build.main(["--out", str(tmp_path / "demo"), "--demo", "--demo-train", "30", "--demo-eval", "6", "--no-progress"])
    assert "42 rows in, 42 written, 0 dropped" in capsys.readouterr().out
    assert set(datasets.get_dataset_config_names(str(tmp_path / "demo"))) == {"all", *DEMO_LANGUAGES}


def test_push_creates_a_dataset_repo_and_uploads_the_built_folder(dataset_small_demo):
    RecordingHfApi.calls = []
    result = push.push_to_hub(dataset_small_demo, "org/m2sa-demo", private=True, api=RecordingHfApi())
    assert result == "commit-info"
    (create, repo_id, create_kwargs), (upload, upload_repo, upload_kwargs) = RecordingHfApi.calls
    assert (create, repo_id, upload, upload_repo) == ("create_repo", "org/m2sa-demo", "upload_folder", "org/m2sa-demo")
    assert create_kwargs == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert upload_kwargs["repo_type"] == "dataset" and Path(upload_kwargs["folder_path"]) == dataset_small_demo
    uploaded = sorted(p.relative_to(dataset_small_demo).as_posix() for p in dataset_small_demo.rglob("*") if p.is_file())
    assert uploaded[:3] == ["LICENSE.md", "README.md", "build_report.json"]
    assert all(name.startswith("data/") and name.endswith("-of-00001.parquet") for name in uploaded[3:])


def test_push_flag_of_the_command_line_uploads_an_existing_build(dataset_small_demo, monkeypatch, capsys):
    RecordingHfApi.calls = []
    monkeypatch.setattr(push, "HfApi", RecordingHfApi)
    build.main(["--out", str(dataset_small_demo), "--push-to-hub", "org/m2sa", "--token", "hf_test"])
    assert [call[0] for call in RecordingHfApi.calls] == ["create_repo", "upload_folder"]
    assert capsys.readouterr().out == f"Pushed {dataset_small_demo} to https://huggingface.co/datasets/org/m2sa (commit-info).\n"


def test_push_refuses_a_folder_that_is_not_a_build_before_calling_the_hub(tmp_path):
    RecordingHfApi.calls = []
    (tmp_path / "README.md").write_text("hello")
    with pytest.raises(FileNotFoundError, match="not a built dataset.*build_report.json"):
        push.push_to_hub(tmp_path, "org/m2sa", api=RecordingHfApi())
    assert RecordingHfApi.calls == []

"""`python -m benchmarks.bench_recipe`: screening recipe levers on validation with a proxy of the multilingual run,
proved on tiny towers and a small UMSAB-shaped folder; the real screen is the benchmark's."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from test_bench_multilingual import umsab_like_root  # noqa: F401 (the data root fixture)

from conftest import REPO_ROOT
from dataset_script.umsab import UMSAB_LANGUAGES

TINY_RECIPE = {"num_epochs": 1, "batch_size": 16, "tiny_hidden_size": 32, "tiny_num_layers": 1,
               "tiny_vocab_size": 300}
CANDIDATE = "label smoothing 0.1"


def run_benchmark(root, work, out, *flags):
    return subprocess.run([sys.executable, "-m", "benchmarks.bench_recipe", "--text-model", "tiny", "--data-root",
                           str(root), "--work-dir", str(work), "--out", str(out), "--train-per-language", "30",
                           "--seeds", "1", "2", *flags],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def screen(umsab_like_root, tmp_path_factory):  # noqa: F811
    work = tmp_path_factory.mktemp("bench-recipe")
    result = run_benchmark(umsab_like_root, work, work / "screen.json", "--base", json.dumps(TINY_RECIPE),
                           "--candidates", CANDIDATE)
    assert result.returncode == 0, result.stderr[-3000:]
    return umsab_like_root, work, json.loads((work / "screen.json").read_text())


def records(folder):
    return {json.loads(path.read_text())["seed"]: json.loads(path.read_text())
            for path in folder.rglob("grid_run.json")}


def test_the_proxy_keeps_a_sample_of_each_languages_training_tweets_and_all_of_validation(screen):
    _, work, _ = screen
    proxy = work / "umsab-proxy-30" / "data"
    for code in UMSAB_LANGUAGES.values():
        assert pq.read_table(next((proxy / f"umsab_{code}").glob("train-*.parquet"))).num_rows == 30
        full = next((work / "umsab-dataset" / "data" / f"umsab_{code}").glob("validation-*.parquet"))
        assert pq.read_table(next((proxy / f"umsab_{code}").glob("validation-*.parquet"))).equals(pq.read_table(full))


def test_each_candidate_is_one_multilingual_run_per_seed_and_the_table_holds_their_validation_scores(screen):
    _, work, report = screen
    folders = {path.name: path for path in (work / "candidates").iterdir()}
    assert set(folders) == {"batch_size=16+num_epochs=1+tiny_hidden_size=32+tiny_num_layers=1+tiny_vocab_size=300",
                            "batch_size=16+label_smoothing=0.1+num_epochs=1+tiny_hidden_size=32+tiny_num_layers=1+"
                            "tiny_vocab_size=300"}
    baseline_folder, candidate_folder = sorted(folders.values(), key=lambda path: "label_smoothing" in path.name)
    for name, folder, smoothing in (("baseline", baseline_folder, 0.0), (CANDIDATE, candidate_folder, 0.1)):
        runs = records(folder)
        assert sorted(runs) == [1, 2] and {run["mode"] for run in runs.values()} == {"multilingual"}
        row = report["table"][name]
        for seed, run in runs.items():
            assert row["seeds"][str(seed)] == run["results"]["validation"]["overall"]["macro_f1"]
            config = json.loads(next(folder.rglob(f"seed{seed}/run_config.json")).read_text())
            assert config["label_smoothing"] == smoothing and config["max_train_samples"] is None
        assert row["mean"] == pytest.approx(sum(row["seeds"].values()) / 2)
    candidate, baseline = report["table"][CANDIDATE]["seeds"].values(), report["table"]["baseline"]["seeds"].values()
    expected = ("kept" if min(candidate) > max(baseline) else "worse" if max(candidate) < min(baseline)
                else "within")
    assert report["table"][CANDIDATE]["verdict"].startswith(expected)
    assert report["table"][CANDIDATE]["difference"] == pytest.approx(report["table"][CANDIDATE]["mean"]
                                                                     - report["table"]["baseline"]["mean"])


def test_a_recipe_reached_again_from_another_base_is_not_trained_again(screen, tmp_path):
    root, work, report = screen
    before = sorted(path.name for path in (work / "candidates").iterdir())
    # The label-smoothing candidate as the base: its baseline is that candidate's folder, already finished.
    result = run_benchmark(root, work, tmp_path / "again.json", "--base",
                           json.dumps({**TINY_RECIPE, "label_smoothing": 0.1}), "--candidates", "baseline")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "starting" not in result.stderr
    assert sorted(path.name for path in (work / "candidates").iterdir()) == before
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["table"]["baseline"]["seeds"] == report["table"][CANDIDATE]["seeds"]

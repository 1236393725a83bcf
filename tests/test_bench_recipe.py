"""`python -m benchmarks.bench_recipe`: screening recipe levers on validation with a proxy of the multilingual run,
proved on tiny towers and a small UMSAB-shaped folder; the real screen is the benchmark's."""

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_bench_multilingual import umsab_like_root  # noqa: F401 (the data root fixture)

from benchmarks.bench_recipe import paired_verdict, screen as screen_table, training_rows
from conftest import REPO_ROOT
from dataset_script.umsab import UMSAB_LANGUAGES
from m2sa_training.evaluation.metrics import macro_f1_from_confusion

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
                           "--candidates", CANDIDATE, "--test-of", CANDIDATE)
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
    paired = report["table"][CANDIDATE]["paired_differences"]
    assert paired == pytest.approx({seed: report["table"][CANDIDATE]["seeds"][seed]
                                    - report["table"]["baseline"]["seeds"][seed] for seed in ("1", "2")})
    assert report["table"][CANDIDATE]["paired_verdict"] == paired_verdict(list(paired.values()))


def test_the_test_split_is_reported_only_for_the_recipes_named_and_from_their_runs(screen):
    _, work, report = screen
    assert list(report["test"]) == [CANDIDATE]
    folder = next(path for path in (work / "candidates").iterdir() if "label_smoothing" in path.name)
    runs = records(folder)
    table = report["test"][CANDIDATE]
    for code in UMSAB_LANGUAGES.values():
        scores = [macro_f1_from_confusion(np.asarray(run["results"]["test"]["per_language"][code]["confusion_matrix"]))
                  for run in runs.values()]
        assert table[code]["mean"] == pytest.approx(np.mean(scores))
        low, high = table[code]["interval_95"]
        assert 0 <= low <= high <= 1 and table[code]["n"] == np.sum(
            runs[1]["results"]["test"]["per_language"][code]["confusion_matrix"])
    assert table["mean of the 8"]["mean"] == pytest.approx(np.mean([table[code]["mean"]
                                                                    for code in UMSAB_LANGUAGES.values()]))
    assert "| umsab_en" not in report["test_markdown"] and "| en | " in report["test_markdown"]


def test_the_paired_rule_keeps_only_a_candidate_higher_on_every_one_of_two_seeds_or_more():
    assert paired_verdict([0.01, 0.002]) == "higher on every seed"
    assert paired_verdict([0.01, -0.002]) == "mixed"
    assert paired_verdict([-0.01, -0.002, -0.1]) == "lower on every seed"
    assert paired_verdict([0.05]) == "too few seeds to pair"


def test_a_candidate_with_fewer_seeds_is_paired_on_the_seeds_both_finished_and_gets_no_unpaired_verdict():
    results = {"baseline": {1: (0.60, {"en": 0.7}, 60.0), 2: (0.62, {"en": 0.8}, 60.0)},
               "3 epochs": {1: (0.63, {"en": 0.9}, 90.0)}}
    row = screen_table(results, [1, 2])["3 epochs"]
    assert row["paired_differences"] == pytest.approx({1: 0.03})
    assert row["paired_verdict"] == "too few seeds to pair"
    assert "verdict" not in row and "difference" not in row  # the unpaired rule needs every seed
    complete = screen_table({**results, "3 epochs": {**results["3 epochs"], 2: (0.61, {"en": 0.9}, 90.0)}}, [1, 2])
    assert complete["3 epochs"]["paired_verdict"] == "mixed" and complete["3 epochs"]["verdict"].startswith("within")


def test_one_seed_keeps_nothing_by_either_rule():
    """With one seed each, "every seed above every baseline seed" would hold for any higher score: no spread is
    measured, so neither rule keeps (or rejects) the candidate."""
    results = {"baseline": {1: (0.60, {"en": 0.7}, 60.0)}, "label smoothing 0.1": {1: (0.65, {"en": 0.9}, 60.0)}}
    row = screen_table(results, [1])["label smoothing 0.1"]
    assert row["difference"] == pytest.approx(0.05)
    assert row["verdict"] == "too few seeds: the spread is not measured"
    assert row["paired_verdict"] == "too few seeds to pair"


def test_training_rows_are_a_positive_number_or_all_and_anything_else_is_refused_before_training(tmp_path):
    assert training_rows("all") is None and training_rows("300") == 300
    result = subprocess.run([sys.executable, "-m", "benchmarks.bench_recipe", "--text-model", "tiny",
                             "--work-dir", str(tmp_path), "--train-per-language", "0"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "a positive number of tweets or 'all', not '0'" in result.stderr
    assert not any(tmp_path.iterdir())


def test_reading_test_for_a_candidate_not_screened_is_refused_before_anything_is_built(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.bench_recipe", "--text-model", "tiny",
                             "--work-dir", str(tmp_path), "--candidates", CANDIDATE, "--test-of", "3 epochs"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "add them to --candidates" in result.stderr and "'3 epochs'" in result.stderr
    assert not any(tmp_path.iterdir())


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
    assert "test" not in again

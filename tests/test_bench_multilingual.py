"""`python -m benchmarks.bench_multilingual`: the paper's comparison (one model per language against one for all) as a
resumable grid, proved on tiny towers and a small UMSAB-shaped folder; the real runs are the benchmark's."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.bench_multilingual import ANCHOR, MODES, compare, verdict
from benchmarks.uncertainty import bootstrap_macro_f1
from conftest import REPO_ROOT
from dataset_script.umsab import UMSAB_LANGUAGES
from m2sa_training.evaluation.metrics import macro_f1_from_confusion

WORDS = {"0": "awful terrible", "1": "today meeting", "2": "lovely wonderful"}


@pytest.fixture(scope="module")
def umsab_like_root(tmp_path_factory):
    """A data root whose umsab/ holds 60 training and 20 validation tweets in each of UMSAB's eight languages."""
    root = tmp_path_factory.mktemp("data")
    rng = random.Random(0)
    for folder in UMSAB_LANGUAGES:
        language_dir = root / "umsab" / folder
        language_dir.mkdir(parents=True)
        for split, size in (("train", 60), ("val", 20)):
            labels = [str(index % 3) for index in range(size)]
            rng.shuffle(labels)
            texts = [f"{folder} {WORDS[label]} {rng.randint(0, 999)}" for label in labels]
            (language_dir / f"{split}_text.txt").write_text("\n".join(texts) + "\n")
            (language_dir / f"{split}_labels.txt").write_text("\n".join(labels) + "\n")
    return root


def run_benchmark(root, work, out, *flags):
    recipe = json.dumps({"num_epochs": 1, "batch_size": 16, "tiny_hidden_size": 32, "tiny_num_layers": 1,
                         "tiny_vocab_size": 300})
    return subprocess.run([sys.executable, "-m", "benchmarks.bench_multilingual", "--text-model", "tiny",
                           "--data-root", str(root), "--work-dir", str(work), "--out", str(out), "--recipe", recipe,
                           "--seeds", "1", *flags],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def benchmark(umsab_like_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("bench-multilingual")
    result = run_benchmark(umsab_like_root, work, work / "multilingual.json")
    assert result.returncode == 0, result.stderr[-3000:]
    return work, json.loads((work / "multilingual.json").read_text())


def grid_records(work):
    return [json.loads(path.read_text()) for path in sorted((work / "grid" / "runs").rglob("grid_run.json"))]


def test_every_language_is_trained_alone_and_together(benchmark):
    work, report = benchmark
    assert report["runs"] == report["runs_finished"] == len(UMSAB_LANGUAGES) + 1  # 8 monolingual, 1 multilingual
    scopes = sorted((record["mode"], record["scope"]) for record in grid_records(work))
    assert scopes == sorted([("monolingual", f"umsab_{code}") for code in UMSAB_LANGUAGES.values()]
                            + [("multilingual", "all")])
    assert list(report["table"]) == [*UMSAB_LANGUAGES.values(), "mean of the 8"]


def test_the_table_holds_each_runs_test_macro_f1_and_its_verdict(benchmark):
    work, report = benchmark
    records = {(record["mode"], record["scope"]): record["results"]["test"] for record in grid_records(work)}
    for code in UMSAB_LANGUAGES.values():
        row = report["table"][code]
        monolingual = records[("monolingual", f"umsab_{code}")]["overall"]
        multilingual = records[("multilingual", "all")]["per_language"][code]
        assert row["monolingual"]["mean"] == pytest.approx(macro_f1_from_confusion(np.asarray(monolingual[
            "confusion_matrix"])))
        assert row["multilingual"]["mean"] == pytest.approx(multilingual["macro_f1"])
        assert row["monolingual"]["n"] == row["multilingual"]["n"] == np.sum(monolingual["confusion_matrix"])
        # Each mode's interval is the bootstrap of its own test tweets (`test_uncertainty.py` checks the bootstrap on
        # known cases), drawn with the mode's own draw seed: its place in the table's settings.
        for draw_seed, (mode, confusion) in enumerate([("monolingual", monolingual["confusion_matrix"]),
                                                       ("multilingual", multilingual["confusion_matrix"])]):
            assert row[mode]["interval_95"] == pytest.approx(bootstrap_macro_f1(confusion, seed=draw_seed))
        seed_difference = (multilingual["macro_f1"]
                           - macro_f1_from_confusion(np.asarray(monolingual["confusion_matrix"])))
        assert row["difference"]["per_seed"] == {"1": pytest.approx(seed_difference)}
        low, high = row["difference"]["interval_95"]
        expected = "multilingual wins" if low > 0 else "monolingual wins" if high < 0 else "the split cannot tell"
        assert row["difference"]["verdict"] == expected  # one seed: its difference has the mean's sign
        anchor = row[ANCHOR]
        assert anchor["n"] == row["monolingual"]["n"] and anchor["std"] == 0.0
        assert anchor["interval_95"][0] <= anchor["mean"] <= anchor["interval_95"][1]
    mean = report["table"]["mean of the 8"]
    for setting in (*MODES, ANCHOR):
        assert mean[setting]["mean"] == pytest.approx(np.mean([report["table"][code][setting]["mean"]
                                                               for code in UMSAB_LANGUAGES.values()]))
    assert mean["difference"]["per_seed"]["1"] == pytest.approx(np.mean([report["table"][code]["difference"][
        "per_seed"]["1"] for code in UMSAB_LANGUAGES.values()]))


def test_the_anchor_is_tfidf_on_the_same_test_tweets(benchmark):
    """The anchor's per-language scores are those of recipes.tfidf_baseline on the benchmark's own dataset."""
    from benchmarks.recipes import tfidf_baseline

    work, report = benchmark
    per_language = tfidf_baseline(work / "umsab-dataset", "all")["test"]["per_language"]
    for code in UMSAB_LANGUAGES.values():
        assert report["table"][code][ANCHOR]["mean"] == pytest.approx(per_language[code]["macro_f1"]["mean"])


def confusion(correct, size=300):
    """A 3-class confusion matrix of `size` tweets (a third per class) with `correct` of each class right and the
    rest predicted as the next class."""
    per_class = size // 3
    matrix = np.zeros((3, 3), dtype=int)
    for label in range(3):
        matrix[label, label] = correct
        matrix[label, (label + 1) % 3] = per_class - correct
    return matrix.tolist()


def two_seed_confusions(monolingual, multilingual):
    """Both modes' confusions in every language, from {seed: correct per class} of each mode."""
    return {mode: {code: {seed: confusion(correct) for seed, correct in by_seed.items()}
                   for code in UMSAB_LANGUAGES.values()}
            for mode, by_seed in (("monolingual", monolingual), ("multilingual", multilingual))}


def test_a_side_wins_only_when_every_seed_agrees_with_the_interval():
    # multilingual is far better on seed 1 and a little worse on seed 2: the pooled interval excludes 0, the seeds
    # do not agree, so no side wins
    table = compare(two_seed_confusions({1: 50, 2: 95}, {1: 99, 2: 93}))
    for code in (*UMSAB_LANGUAGES.values(), "mean of the 8"):
        difference = table[code]["difference"]
        assert difference["interval_95"][0] > 0
        assert difference["per_seed"]["1"] > 0 > difference["per_seed"]["2"]
        assert difference["verdict"] == "the seeds disagree"
    # better on both seeds: multilingual wins; worse on both: monolingual wins
    assert compare(two_seed_confusions({1: 50, 2: 60}, {1: 95, 2: 97}))["ar"]["difference"]["verdict"] == \
        "multilingual wins"
    assert compare(two_seed_confusions({1: 95, 2: 97}, {1: 50, 2: 60}))["ar"]["difference"]["verdict"] == \
        "monolingual wins"
    # level: the split cannot tell, whatever the seeds say
    assert compare(two_seed_confusions({1: 80, 2: 80}, {1: 81, 2: 81}))["ar"]["difference"]["verdict"] == \
        "the split cannot tell"


def test_verdict_reads_the_interval_and_the_seeds():
    assert verdict([0.01, 0.09], [0.02, 0.06]) == "multilingual wins"
    assert verdict([-0.09, -0.01], [-0.02, -0.06]) == "monolingual wins"
    assert verdict([0.01, 0.09], [0.08, -0.01]) == "the seeds disagree"
    assert verdict([-0.09, -0.01], [-0.08, 0.01]) == "the seeds disagree"
    assert verdict([-0.01, 0.09], [0.02, 0.06]) == "the split cannot tell"


def test_a_rerun_trains_nothing_and_writes_the_same_results(benchmark, umsab_like_root, tmp_path):
    work, report = benchmark
    before = {path: path.stat().st_mtime_ns for path in (work / "grid" / "runs").rglob("grid_run.json")}
    result = run_benchmark(umsab_like_root, work, tmp_path / "again.json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert {path: path.stat().st_mtime_ns for path in before} == before
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["table"] == report["table"]


def test_the_grids_own_table_finds_the_multilingual_run_under_each_config(benchmark):
    """The grid's languages are the builder's configs (`umsab_ar`), the multilingual run reports per language (`ar`):
    the grid's results.md matches them through the monolingual runs."""
    work, report = benchmark
    test_table = (work / "grid" / "results.md").read_text().split("## validation macro-F1")[0]
    rows = {line.split("|")[1].strip(): line for line in test_table.splitlines() if line.startswith("| umsab_")}
    assert sorted(rows) == sorted(f"umsab_{code}" for code in UMSAB_LANGUAGES.values())
    for code in UMSAB_LANGUAGES.values():
        cells = [cell.strip().strip("*") for cell in rows[f"umsab_{code}"].split("|")[2:-1]]
        assert "–" not in cells and len(cells) == 2  # monolingual, multilingual
        assert cells[1].startswith(f"{report['table'][code]['multilingual']['mean']:.3f}")

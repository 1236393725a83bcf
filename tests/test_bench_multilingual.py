"""`python -m benchmarks.bench_multilingual`: the paper's comparison (one model per language against one for all) as a
resumable grid, proved on tiny towers and a small UMSAB-shaped folder; the real runs are the benchmark's."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.bench_multilingual import MODES
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
        for mode in MODES:
            low, high = row[mode]["interval_95"]
            assert 0 <= low <= high <= 1
        low, high = row["difference"]["interval_95"]
        expected = "multilingual wins" if low > 0 else "monolingual wins" if high < 0 else "the split cannot tell"
        assert row["difference"]["verdict"] == expected
    mean = report["table"]["mean of the 8"]
    for mode in MODES:
        assert mean[mode]["mean"] == pytest.approx(np.mean([report["table"][code][mode]["mean"]
                                                            for code in UMSAB_LANGUAGES.values()]))


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

"""The experiment grid: run listing, resumable runs, and tables that hold exactly what the runs measured."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT
from m2sa_training.evaluation.metrics import compute_metrics, macro_f1_from_confusion
from m2sa_training.grid.runner import RUN_RECORD, grid_runs, load_grid_config, main

TRAINING = {"num_epochs": 3, "batch_size": 16, "max_length": 32}
GRID = {"title": "test grid", "text_towers": ["tiny"], "image_towers": ["tiny", "none"],
        "modes": ["monolingual", "multilingual"], "languages": ["de", "en"], "seeds": [3]}  # fmt: skip


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory):
    from dataset_script.demo import ensure_demo_dataset

    return str(ensure_demo_dataset(tmp_path_factory.mktemp("demo") / "m2sa-demo-grid", num_train=960, num_eval=160))


def write_grid(path, demo_dataset, **changes):
    grid = {**GRID, "output_dir": str(path / "grid"),
            "training": {**TRAINING, "dataset": demo_dataset, "cache_dir": str(path / "cache")}, **changes}
    path.mkdir(parents=True, exist_ok=True)
    (path / "grid.yaml").write_text(yaml.safe_dump(grid))
    return path / "grid.yaml"


def grid_command(config, *flags):
    return subprocess.run([sys.executable, "-m", "m2sa_training.grid", "--config", str(config), *flags],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def finished_grid(demo_dataset, tmp_path_factory):
    """The small grid (2 tower pairs x monolingual de, en and multilingual x 1 seed: 6 runs), run to the end."""
    config = write_grid(tmp_path_factory.mktemp("grid"), demo_dataset)
    result = grid_command(config)
    assert result.returncode == 0, result.stderr[-3000:]
    return config, load_grid_config(config), result


def test_paper_grid_dry_run_lists_every_run():
    grid = load_grid_config(REPO_ROOT / "configs" / "paper_grid.yaml")
    runs = grid_runs(grid)
    # 3 text towers x 3 image towers x (21 monolingual + multilingual + multilingual with *_mt) x 5 seeds
    assert len(runs) == 3 * 3 * (21 + 1 + 1) * 5 == 1035
    assert len({run.folder(grid) for run in runs}) == len(runs)
    xlmr_sm_clip = [run for run in runs if run.text_tower == "xlmr_sm" and run.image_tower == "clip"
                    and run.mode == "multilingual_mt" and run.seed == 42]  # fmt: skip
    flags = xlmr_sm_clip[0].train_flags(grid)
    assert flags[flags.index("--text-model") + 1] == "cardiffnlp/twitter-xlm-roberta-base-sentiment-multilingual"
    assert flags[flags.index("--vision-model") + 1] == "openai/clip-vit-base-patch32"
    assert "--include-translated" in flags and flags[flags.index("--languages") + 1:][:21] == grid.languages
    text_only = [run for run in runs if run.image_tower == "none"][0].train_flags(grid)
    assert text_only[text_only.index("--modalities") + 1] == "text"
    result = grid_command(REPO_ROOT / "configs" / "paper_grid.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("1035 runs: 0 finished, 0 interrupted")


@pytest.mark.parametrize("change, message", [
    ({"modes": ["bilingual"]}, "Unknown modes ['bilingual']"),
    ({"languages": ["all"]}, "one by one"),
    ({"seeds": [1, 1]}, "without repeats"),
    ({"training": {"languages": ["de"]}}, "which the grid sets for each run"),
    ({"training": {"learning_rat": 0.1}}, "Unknown train.py options"),
    ({"epochs": 3}, "Unknown keys"),
    ({"keep": "some"}, "keep in"),
])  # fmt: skip
def test_bad_grid_configs_are_refused_before_training(tmp_path, change, message):
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump({**GRID, **change}))
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_grid_config(config)


def test_tables_hold_what_each_run_measured(finished_grid):
    _, grid, _ = finished_grid
    runs = grid_runs(grid)
    measured = {}
    for run in runs:  # what train.py itself wrote for the run
        folder = run.folder(grid)
        measured[run] = json.loads((folder / "runs" / f"{run.modality}-seed3" / "results.json").read_text())["results"]
        assert not (folder / "runs" / f"{run.modality}-seed3" / "checkpoints").exists()  # keep: model
        assert (folder / "model.safetensors").is_file()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in
            (Path(grid.output_dir) / "results.md").read_text().split("## validation")[0].splitlines()}
    for run in runs:
        test = measured[run]["test"]
        if run.scope == "all":
            for language in grid.languages:
                assert f"{test['per_language'][language]['macro_f1']:.3f}" in rows[language]
            assert f"{test['overall']['macro_f1']:.3f}" in rows["all languages"]
        else:
            assert f"{test['overall']['macro_f1']:.3f}" in rows[run.scope]
    # Monolingual "all languages": the two language models' test predictions pooled.
    for image in ("tiny", "none"):
        matrices = [measured[run]["test"]["overall"]["confusion_matrix"] for run in runs
                    if run.mode == "monolingual" and run.image_tower == image]  # fmt: skip
        pooled = [[sum(cells) for cells in zip(*rows_)] for rows_ in zip(*matrices)]
        assert f"{macro_f1_from_confusion(pooled):.3f}" in rows["all languages"]
    # The best of each row is bold, and only the best.
    for line in (rows["de"], rows["en"], rows["all languages"]):
        cells = line.strip("| ").split(" | ")[1:]
        means = [float(cell.strip("*")[:5]) for cell in cells]
        assert [cell.startswith("**") for cell in cells] == [mean == max(means) for mean in means]
    csv_lines = (Path(grid.output_dir) / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("split,language,monolingual: tiny + tiny mean,") and len(csv_lines) == 1 + 2 * 3
    assert (Path(grid.output_dir) / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    listing = json.loads((Path(grid.output_dir) / "runs.json").read_text())["runs"]
    assert [entry["record"]["results"] for entry in listing] == [measured[run] for run in runs]


def test_the_multilingual_multimodal_model_learns(finished_grid):
    _, grid, _ = finished_grid
    runs = {run.image_tower: run for run in grid_runs(grid) if run.mode == "multilingual"}
    summary = json.loads((runs["tiny"].folder(grid) / "comparison.json").read_text())["test"]
    learned, majority = summary["multimodal"]["overall"]["macro_f1"]["mean"], summary["majority"]["overall"]["macro_f1"]["mean"]
    assert learned > majority + 0.2, (learned, majority)
    # The same run without an image tower, what the texts alone teach: the images add to it. This grid's seed 3 gives
    # test macro-F1 0.478 against 0.260; seeds 1, 2, 4 of the same run 0.509 / 0.332, 0.464 / 0.329, 0.499 / 0.215
    # (margins 0.14 to 0.28). A multimodal model that ignores images scores as the text-only one does.
    text_only = json.loads((runs["none"].folder(grid) / "comparison.json").read_text())["test"]["text-only"]
    assert learned > text_only["overall"]["macro_f1"]["mean"] + 0.1, (learned, text_only["overall"]["macro_f1"])


def test_a_second_invocation_runs_nothing_and_rewrites_the_same_tables(finished_grid):
    config, grid, first = finished_grid
    assert "6 runs: 0 already finished, 0 resumed, 6 started." in first.stdout
    out = Path(grid.output_dir)
    tables = {name: (out / name).read_bytes() for name in ("results.md", "results.csv", "results.png", "runs.json")}
    records = {path: path.stat().st_mtime_ns for path in out.glob(f"runs/**/{RUN_RECORD}")}
    assert len(records) == 6
    again = grid_command(config)
    assert again.returncode == 0 and "6 runs: 6 already finished, 0 resumed, 0 started." in again.stdout
    assert {path: path.stat().st_mtime_ns for path in records} == records
    for name in tables:
        (out / name).unlink()
    assert grid_command(config, "--report-only").returncode == 0
    assert {name: (out / name).read_bytes() for name in tables} == tables
    dry = grid_command(config, "--dry-run")
    assert dry.stdout.strip().splitlines()[-1].startswith("6 runs: 6 finished, 0 interrupted (would resume")


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_result(finished_grid, demo_dataset, tmp_path):
    """Kill the grid inside its one run, after the first epoch's checkpoint; rerun: it resumes (the first epoch is
    not trained again) and ends with exactly the metrics of the same run left uninterrupted."""
    _, finished, _ = finished_grid
    config = write_grid(tmp_path, demo_dataset, image_towers=["tiny"], modes=["multilingual"])
    grid = load_grid_config(config)
    (run,) = grid_runs(grid)
    checkpoint = run.folder(grid) / "runs" / "multimodal-seed3" / "checkpoints" / "epoch-1" / "trainer_state.json"
    process = subprocess.Popen([sys.executable, "-m", "m2sa_training.grid", "--config", str(config)], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not checkpoint.is_file():
        assert process.poll() is None and time.time() < deadline, "the grid ended before its first checkpoint"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    first_epoch = json.loads(checkpoint.read_text())["history"][0]
    assert grid_command(config, "--dry-run").stdout.split("\n")[0].split()[1] == "interrupted"

    resumed = grid_command(config)
    assert resumed.returncode == 0 and "1 runs: 0 already finished, 1 resumed, 0 started." in resumed.stdout
    record = json.loads((run.folder(grid) / RUN_RECORD).read_text())
    outcome = json.loads((run.folder(grid) / "runs" / "multimodal-seed3" / "results.json").read_text())
    assert outcome["history"][0] == first_epoch  # carried over from the checkpoint, not retrained
    uninterrupted = next(other for other in grid_runs(finished) if other.mode == "multilingual"
                         and other.image_tower == "tiny")  # fmt: skip
    expected = json.loads((uninterrupted.folder(finished) / RUN_RECORD).read_text())["results"]
    assert record["results"] == expected


def test_a_run_folder_with_other_options_is_refused(finished_grid, tmp_path):
    config, grid, _ = finished_grid
    changed = yaml.safe_load(config.read_text())
    changed["training"]["learning_rate"] = 0.5
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    result = grid_command(tmp_path / "changed.yaml", "--dry-run")
    assert result.returncode != 0 and "holds a run of this grid with other options (learning_rate differ)" in result.stderr


def test_two_processes_share_each_run(demo_dataset, tmp_path):
    """Under a 2-process launch every run is trained once by both processes, and the tables are written once."""
    config = write_grid(tmp_path, demo_dataset, modes=["multilingual"], training={
        **TRAINING, "num_epochs": 1, "dataset": demo_dataset, "cache_dir": str(tmp_path / "cache")})
    environment = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                             "m2sa_training.grid", "--config", str(config)], cwd=REPO_ROOT, env=environment,
                            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("2 runs: 0 already finished, 0 resumed, 2 started.") == 1
    assert result.stdout.count("| all languages |") == 2  # test and validation tables, printed by one process
    grid = load_grid_config(config)
    for run in grid_runs(grid):
        assert len(json.loads((run.folder(grid) / RUN_RECORD).read_text())["results"]["test"]["per_language"]) == 2


def test_main_refuses_a_missing_config(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--config", str(tmp_path / "missing.yaml")])


def test_pooled_macro_f1_from_confusion_matrices_equals_macro_f1_of_the_pooled_predictions():
    import random

    generator = random.Random(0)
    labels = [generator.randrange(3) for _ in range(200)]
    predictions = [label if generator.random() < 0.6 else generator.randrange(3) for label in labels]
    predictions[:5] = [0] * 5
    halves = [compute_metrics(labels[part], predictions[part], ["x"] * 100)["overall"]["confusion_matrix"]
              for part in (slice(0, 100), slice(100, 200))]
    pooled = [[a + b for a, b in zip(row_a, row_b)] for row_a, row_b in zip(*halves)]
    expected = compute_metrics(labels, predictions, ["x"] * 200)["overall"]["macro_f1"]
    assert macro_f1_from_confusion(pooled) == pytest.approx(expected, abs=1e-12)
    # A class never true nor predicted counts as 0, as in compute_metrics.
    assert macro_f1_from_confusion([[2, 0, 0], [0, 2, 0], [0, 0, 0]]) == pytest.approx(2 / 3)

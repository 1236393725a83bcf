"""The paper's experiment grid in one command: text towers × image towers × training modes × seeds.

    python -m m2sa_training.grid --config configs/paper_grid.yaml [--dry-run] [--report-only]
    accelerate launch -m m2sa_training.grid --config configs/paper_grid.yaml

Every run of the grid is one train.py job (one tower pair, one mode and scope, one seed) in its own folder,
`<output_dir>/runs/<text>+<image>/<mode>/<language or all>/seed<N>/`. A run whose `grid_run.json` is written is
finished and never repeated; a run that was started and not finished continues from its last checkpoint. Under
`accelerate launch` every process takes part in each run, one run at a time. After the runs, the paper-format tables
are rebuilt from the run folders (`report.py`); `--report-only` rebuilds them without training.
"""

import argparse
import json
import logging
import re
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from m2sa_files.atomic import write_text_atomically
from modeling_m2sa.configuration_m2sa import REGRESSION
from modeling_m2sa.errors_m2sa import M2SAError

from ..command_line import run_command
from ..processes import process_state
from ..training.loop import job_accelerator, may_leave_parameters_unused
from ..training.options import NO_VISION, TEXT_TOWERS, VISION_TOWERS, TrainingOptions, parse_options
from ..training.run import RUN_CONFIG, options_changed_since, run_name, run_training
from .report import write_grid_report

logger = logging.getLogger(__name__)

MODES = {
    "monolingual": (False, False),  # (one model for all languages, add the *_mt sets to training)
    "monolingual_mt": (False, True),
    "multilingual": (True, False),
    "multilingual_mt": (True, True),
}
"""Training modes: one model per language or one for all of them, with or without the machine-translated sets."""

AXES = ("text_towers", "image_towers", "modes", "languages", "seeds")
ALL_LANGUAGES = "all"
KEEP_CHOICES = ("all", "model", "results")
"""What a finished run keeps: everything (checkpoints too), its exported model and reports, or its reports only."""
RUN_RECORD = "grid_run.json"
REPORT_FILES = {RUN_CONFIG, RUN_RECORD, "comparison.json", "comparison.md", "evaluation.json", "evaluation.md",
                "invalid_images.json"}  # fmt: skip
SET_BY_THE_GRID = ("text_model", "vision_model", "modalities", "languages", "dataset_config", "include_translated",
                   "seeds", "output_dir", "resume_from_checkpoint", "overwrite_output_dir", "push_to_hub")
"""Training options each run gets from the grid; `training:` may not set them."""


@dataclass(frozen=True)
class GridConfig:
    """A grid YAML file: the axes, where the runs go, and the train.py options every run shares."""

    text_towers: list[str]
    image_towers: list[str]
    modes: list[str]
    languages: list[str]
    seeds: list[int]
    output_dir: str = "outputs/grid"
    keep: str = "model"
    training: dict = field(default_factory=dict)
    title: str = "M2SA grid"


@dataclass(frozen=True)
class GridRun:
    """One train.py job of the grid."""

    text_tower: str  # as the grid names it (`xlmr_sm`, `tiny`, a Hub id or a path)
    image_tower: str  # likewise, or `none` for a text-only model
    mode: str
    scope: str  # a language (monolingual modes) or `all`
    seed: int

    @property
    def text_only(self):
        return self.image_tower == NO_VISION

    def folder(self, grid):
        towers = f"{tower_label(self.text_tower)}+{tower_label(self.image_tower)}"
        return Path(grid.output_dir) / "runs" / towers / self.mode / self.scope / f"seed{self.seed}"

    def train_flags(self, grid):
        """The train.py flags of this run (the grid's shared `training` options come beneath them)."""
        one_model_for_all, translated = MODES[self.mode]
        return [
            "--text-model", TEXT_TOWERS.get(self.text_tower, self.text_tower),
            "--vision-model", VISION_TOWERS.get(self.image_tower, self.image_tower),
            "--modalities", "text" if self.text_only else "multimodal",
            "--languages", *(grid.languages if one_model_for_all else [self.scope]),
            *(["--include-translated"] if translated else []),
            "--seeds", str(self.seed), "--output-dir", str(self.folder(grid)),
        ]  # fmt: skip

    @property
    def modality(self):
        return "text" if self.text_only else "multimodal"


def tower_label(tower):
    """A tower's name in folder names: the grid's name, or the last part of a Hub id or path."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", tower.rstrip("/").split("/")[-1]) or "tower"


def load_grid_config(path):
    """The grid of a YAML file, checked: every mistake is reported before any training time is spent."""
    path = Path(path)
    if not path.is_file():
        raise M2SAError(f"Grid config {str(path)!r} does not exist.", code="missing_grid_config")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise M2SAError(f"{path} must map grid keys to values (see configs/grid_demo.yaml).", code="bad_grid_config")
    known = [item.name for item in fields(GridConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise M2SAError(f"Unknown keys in {path}: {unknown}. A grid config holds {known}; train.py options go "
                        f"under `training:`.",
                        code="bad_grid_config")
    missing = [name for name in AXES if name not in values]
    if missing:
        raise M2SAError(f"{path} must name {', '.join(missing)} (lists of the grid's axes).", code="bad_grid_config")
    for name in AXES:
        value = values[name] if isinstance(values[name], list) else [values[name]]
        if not value or len(set(map(str, value))) != len(value):
            raise M2SAError(f"{name} in {path} must be a non-empty list without repeats, got {values[name]!r}.",
                            code="bad_grid_config")
        values[name] = value
    values["training"] = values.get("training") or {}  # `training:` left empty
    grid = GridConfig(**values)
    check_grid(grid, path)
    return grid


def check_grid(grid, where):
    unknown_modes = sorted(set(grid.modes) - set(MODES))
    if unknown_modes:
        raise M2SAError(f"Unknown modes {unknown_modes} in {where}; choose from {list(MODES)}.", code="bad_grid_config")
    if grid.keep not in KEEP_CHOICES:
        raise M2SAError(f"keep in {where} must be one of {KEEP_CHOICES}, got {grid.keep!r}.", code="bad_grid_config")
    if not all(isinstance(seed, int) for seed in grid.seeds):
        raise M2SAError(f"seeds in {where} must be integers, got {grid.seeds!r}.", code="bad_grid_config")
    if ALL_LANGUAGES in grid.languages:
        raise M2SAError(f"languages in {where} must list the languages (configs) one by one: monolingual runs need "
                        f"each of them, and multilingual runs train on all of them together.",
                        code="bad_grid_config")
    if NO_VISION in grid.text_towers:
        raise M2SAError(f"text_towers in {where} names {NO_VISION!r}; every model has a text tower.",
                        code="bad_grid_config")
    for axis in ("text_towers", "image_towers"):
        labels = [tower_label(tower) for tower in getattr(grid, axis)]
        if len(set(labels)) != len(labels):
            raise M2SAError(f"{axis} in {where} would share run folders ({labels}); give the towers paths with "
                            f"different last parts.",
                            code="bad_grid_config")
    if not isinstance(grid.training, dict):
        raise M2SAError(f"training in {where} must map train.py options to values.", code="bad_grid_config")
    set_here = sorted(set(grid.training) & set(SET_BY_THE_GRID))
    if set_here:
        raise M2SAError(
            f"training in {where} sets {set_here}, which the grid sets for each run (from text_towers, image_towers, "
            f"modes, languages, seeds and output_dir); remove them from `training:`.",
            code="bad_grid_config",
        )
    unknown = sorted(set(grid.training) - set(TrainingOptions.__dataclass_fields__))
    if unknown:
        raise M2SAError(f"Unknown train.py options under training in {where}: {unknown}.", code="bad_grid_config")
    if grid.training.get("problem_type") == REGRESSION:
        raise M2SAError(f"training in {where} sets problem_type: regression, but the grid's tables compare "
                        f"macro-F1 of classifiers; train regression models with train.py --problem-type regression.",
                        code="bad_grid_config")


def grid_runs(grid):
    """Every run, in order: settings (mode, text tower, image tower), then scopes, then seeds."""
    return [GridRun(text, image, mode, scope, seed)
            for mode in grid.modes for text in grid.text_towers for image in grid.image_towers
            for scope in (grid.languages if not MODES[mode][0] else [ALL_LANGUAGES])
            for seed in grid.seeds]  # fmt: skip


def run_options(grid, run, resume=False):
    flags = run.train_flags(grid) + (["--resume-from-checkpoint", "latest"] if resume else [])
    try:
        return parse_options(flags, settings=grid.training)
    except M2SAError as error:
        raise M2SAError(f"Run {run.folder(grid)}: {error}", code=error.code) from error


def run_status(grid, run, options):
    """`finished`, `interrupted` (started, to be resumed) or `pending`; a folder holding a run with other options is
    refused (changing a grid's options would mix runs of two recipes in one table)."""
    folder = run.folder(grid)
    config_path = folder / RUN_CONFIG
    if not config_path.is_file():
        return "pending"
    changed = options_changed_since(config_path, options)
    if changed:
        raise M2SAError(
            f"{folder} holds a run of this grid with other options ({', '.join(changed)} differ). Keep the grid's "
            f"options as they were, choose another output_dir, or delete that folder to rerun it.",
            code="run_folder_holds_other_run",
        )
    return "finished" if (folder / RUN_RECORD).is_file() else "interrupted"


def read_run_record(grid, run):
    """The record of a finished run (None when it is not finished)."""
    path = run.folder(grid) / RUN_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def finished_runs(grid):
    """(run, record) of every finished run of `grid`, in `grid_runs` order."""
    return [(run, record) for run in grid_runs(grid) if (record := read_run_record(grid, run)) is not None]


def record_run(grid, run):
    """Write the finished run's record (its per-seed metrics) from the folder train.py wrote."""
    folder = run.folder(grid)
    outcome = json.loads((folder / "runs" / run_name(run.modality, run.seed) / "results.json").read_text())
    record = {
        "text_tower": run.text_tower, "image_tower": run.image_tower, "mode": run.mode, "scope": run.scope,
        "seed": run.seed, "modality": run.modality, "folder": str(folder.relative_to(grid.output_dir)),
        "best_epoch": outcome["best_epoch"], "checkpoint_average": outcome.get("checkpoint_average"),
        "epochs": len(outcome["history"]),
        "train_seconds": sum(epoch["train_seconds"] for epoch in outcome["history"]),
        "results": outcome["results"],
    }  # fmt: skip
    write_text_atomically(folder / RUN_RECORD, json.dumps(record, indent=2) + "\n")
    return record


def prune(folder, keep):
    """Delete what a finished run no longer needs: its checkpoints, the `best/` copy of the model exported at the
    folder's top, and its starting towers (`model`), or everything but the reports and plots (`results`). The record
    is written first, so a kill here leaves a finished run."""
    if keep == "all":
        return
    doomed = [*folder.glob("runs/*/checkpoints"), *folder.glob("runs/*/best"), folder / "towers"]
    if keep == "results":
        doomed += [path for path in folder.iterdir() if path.name not in REPORT_FILES and path.suffix != ".png"
                   and path.name != "runs"]
        doomed += [path for path in folder.glob("runs/*/*") if path.name != "results.json"]
    for path in doomed:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_grid(grid, runs):
    """Run what is not finished, one run at a time over all processes; returns how many runs were skipped (already
    finished), resumed and started: {"skipped": n, "resumed": n, "started": n}.

    The runs share one `Accelerator` (the grid is one job to Accelerate), ended once the last run is done."""
    state = process_state()
    counts = {"skipped": 0, "resumed": 0, "started": 0}
    accelerator = None
    try:
        for index, run in enumerate(runs, 1):
            options = run_options(grid, run)
            status = run_status(grid, run, options)
            if status == "finished":
                counts["skipped"] += 1
                continue
            counts["resumed" if status == "interrupted" else "started"] += 1
            if state.is_main_process:
                logger.info("[%d/%d] %s %s", index, len(runs), "resuming" if status == "interrupted" else "starting",
                            run.folder(grid))
            if accelerator is None:  # the runs share the `training:` options the accelerator reads
                accelerator = job_accelerator(options, any(may_leave_parameters_unused(run_options(grid, other))
                                                           for other in runs))
            run_training(run_options(grid, run, resume=status == "interrupted"), accelerator)
            if state.is_main_process:
                record_run(grid, run)
                prune(run.folder(grid), grid.keep)
            state.wait_for_everyone()
    finally:
        if accelerator is not None:
            accelerator.end_training()
    return counts


def dry_run(grid, runs):
    """The runs with their status, and the count (every run's options are checked on the way)."""
    statuses = [run_status(grid, run, run_options(grid, run)) for run in runs]
    lines = [f"{index:>5}  {status:<11}  {run.folder(grid)}" for index, (run, status) in enumerate(zip(runs, statuses), 1)]
    totals = {status: statuses.count(status) for status in ("finished", "interrupted", "pending")}
    lines.append(f"{len(runs)} runs: {totals['finished']} finished, {totals['interrupted']} interrupted (would resume "
                 f"from their last checkpoint), {totals['pending']} to run.")
    return "\n".join(lines)


def load_and_run(args):
    """Run the grid as `args` ask; the grid and its runs where their tables are to be printed (the main process)."""
    grid = load_grid_config(args.config)
    runs = grid_runs(grid)
    if args.dry_run:
        print(dry_run(grid, runs))
        return None, runs
    if not args.report_only:
        counts = run_grid(grid, runs)
        if process_state().is_main_process:
            print(f"{len(runs)} runs: {counts['skipped']} already finished, {counts['resumed']} resumed, "
                  f"{counts['started']} started.")
    return (grid if process_state().is_main_process else None), runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="grid YAML file (see configs/grid_demo.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their count; train nothing")
    parser.add_argument("--report-only", action="store_true", help="rebuild the tables from the run folders")
    args = parser.parse_args(argv)
    grid, runs = run_command(lambda: load_and_run(args))
    if grid is None:
        return
    paths = write_grid_report(grid, runs, [read_run_record(grid, run) for run in runs])
    print(Path(paths["markdown"]).read_text())
    print("Tables:", ", ".join(str(path) for path in paths.values()))


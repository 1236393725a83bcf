"""The paper's experiment grid (`python -m m2sa_training.grid --config configs/paper_grid.yaml`): `runner` turns a
grid YAML into training runs and runs those not finished; `report` rebuilds the paper-format tables from the run
folders."""

from .report import write_grid_report
from .runner import grid_runs, load_grid_config, run_grid

__all__ = ["grid_runs", "load_grid_config", "run_grid", "write_grid_report"]

"""What a trained model is worth, written down: `metrics` (per-language scores, baselines, aggregates over seeds),
`reports` (Markdown tables, figures and `evaluation.json`), `calibration` (temperature scaling and reliability) and
`model_card` (the Hub card)."""

from .calibration import calibration_report, fit_temperature
from .metrics import aggregate_runs, compute_metrics, compute_regression_metrics
from .reports import write_evaluation_report
from .model_card import render_model_card

__all__ = [
    "aggregate_runs",
    "calibration_report",
    "compute_metrics",
    "compute_regression_metrics",
    "fit_temperature",
    "render_model_card",
    "write_evaluation_report",
]

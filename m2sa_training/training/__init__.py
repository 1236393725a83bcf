"""One training job, as `train.py` runs it: `parse_options` reads the command line (or a YAML config and a preset) into
`TrainingOptions`, and `run_training` trains every seed, evaluates, and writes the model, its card and the reports.

Inside: `options` (the options and their checks), `data` (the collator), `model_setup` (towers and model), `loop` (the
Accelerate loop and its checkpoints), `run` (a whole job), `lora`, `feature_cache`, `modality_dropout` and
`tiny_towers` (the offline default's towers). Datasets are read by `m2sa_training.dataset_sources`.
"""

from .options import TrainingOptions, parse_options
from .run import run_training

__all__ = ["TrainingOptions", "parse_options", "run_training"]

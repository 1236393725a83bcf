"""Training, evaluating and applying M2SA models: the code behind `train.py`, the experiment grid and the corpus scorer.

One subpackage per concern, each importing only those below it:

- `m2sa_training.grid`: the paper's experiment grid, many training runs and their tables
  (`python -m m2sa_training.grid`).
- `m2sa_training.training`: one training job: options, data, the Accelerate loop, checkpoints, exports (`train.py`).
- `m2sa_training.score`: labelling a whole corpus with a saved model (`python -m m2sa_training.score`).
- `m2sa_training.evaluation`: metrics, calibration, evaluation reports and the model card.
- `m2sa_training.dataset_sources`: any dataset opened, its columns and labels read into the M2SA schema, missing
  splits carved: what training and scoring both read.

What all commands share sits at the top: `command_line` (logging and errors of a command) and `processes` (the
process state of a multi-process run).
"""

from .quiet_start import drop_known_library_noise

drop_known_library_noise()  # before anything imports transformers' quantizers (and so torchao)

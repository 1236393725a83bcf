"""What every M2SA command (`train.py`, the grid, the corpus scorer) does around its work, so that they log and stop
alike: warnings from every library, M2SA's own progress from the main process only (the others of a multi-process
run log only warnings), no per-tower "Loading weights" bars, and a user's mistake stopped with its message."""

import logging
import sys

import transformers

from modeling_m2sa.errors_m2sa import M2SAError

from .processes import process_state

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_command(work):
    """Run `work()` as a command and return what it returns. An `M2SAError` (a mistake in what the user gave, whose
    message says what to do) ends the process with `error: <message>` and exit status 1; anything else is a bug and
    keeps its traceback."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    is_main_process = process_state().is_main_process
    logging.getLogger("m2sa_training").setLevel(logging.INFO if is_main_process else logging.WARNING)
    transformers.utils.logging.disable_progress_bar()  # per-tower "Loading weights" bars drown the epoch bars
    try:
        return work()
    except M2SAError as error:
        sys.exit(f"error: {error}")

"""What every M2SA command (`train.py`, the grid, the corpus scorer) does around its work, so that they log and stop
alike: warnings from every library, M2SA's own progress from the main process only (the others of a multi-process
run log only warnings), no per-tower "Loading weights" bars, and a user's mistake or a full disk stopped with its
message."""

import logging
import sys

import transformers

from m2sa_files.disk_full import disk_full_message, exiting_on_a_full_disk
from modeling_m2sa.errors_m2sa import M2SAError

from .processes import process_state

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TRAINING_CONTINUES = "run the same command again to continue (train.py with --resume-from-checkpoint latest)"
KEPT = "Everything written completely is kept; half-written files were removed."


def disk_full_error(failure, then, kept=KEPT):
    """The `disk_full` error of every command: `failure` says what could not be written (the library's words), `then`
    how the command continues once there is room, `kept` what it keeps."""
    return M2SAError(disk_full_message(failure, kept, then), code="disk_full")


def run_command(work, how_to_continue=TRAINING_CONTINUES):
    """Run `work()` as a command and return what it returns. An `M2SAError` (a mistake in what the user gave, whose
    message says what to do) or a full disk (whichever library's error says so: `m2sa_files.disk_full`; the message
    ends with `how_to_continue`) ends the process with `error: <message>` and exit status 1; anything else is a bug
    and keeps its traceback."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    is_main_process = process_state().is_main_process
    logging.getLogger("m2sa_training").setLevel(logging.INFO if is_main_process else logging.WARNING)
    transformers.utils.logging.disable_progress_bar()  # per-tower "Loading weights" bars drown the epoch bars
    with exiting_on_a_full_disk(KEPT, how_to_continue):
        try:
            return work()
        except M2SAError as error:  # first: its own message (a disk_full one included) says what to do
            sys.exit(f"error: {error}")

"""The process state of a (possibly multi-process) run, created as `Accelerator` creates it."""

from accelerate import PartialState
from accelerate.utils import parse_flag_from_env


def process_state():
    """Rank and world size under `accelerate launch` / `torchrun` (ACCELERATE_USE_CPU=true for CPU processes).

    `PartialState` is shared by the whole process, so it must be created with the same `cpu` flag `Accelerator`
    uses, or a CPU multi-process run would see a single process.
    """
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))

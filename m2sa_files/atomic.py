"""Writes that a kill cannot leave half done, for the dataset builder and for training.

Everything is written under a temporary hidden name next to its target (same filesystem, so the final rename is
atomic) and renamed into place once complete. A reader then finds the old complete version or the new complete
one, never a mix. Replacing a directory takes two renames (old out of the way, new in): a kill between them leaves
no directory at the target, which the next write fills.
"""

import glob
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def partial_path(path, unique=True):
    """The hidden temporary name `path` is written under: `.<name>.partial`, with `-<process id>` when `unique`
    (for targets that several processes may write at once, such as a shared cache)."""
    path = Path(path)
    owner = f"-{os.getpid()}" if unique else ""
    return path.with_name(f".{path.name}{PARTIAL_SUFFIX}{owner}")


def is_partial(path):
    """Whether `path` is a temporary name of `partial_path` (or the old version `replace_directory` set aside)."""
    return re.fullmatch(rf"\..+{re.escape(PARTIAL_SUFFIX)}(-\d+)?(\.previous)?", Path(path).name) is not None


@contextmanager
def atomic_file(path):
    """Yield a temporary path to write; when the block ends without an error, it replaces `path` in one rename."""
    partial = partial_path(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomically(path, text):
    with atomic_file(path) as partial:
        partial.write_text(text, encoding="utf-8")


def replace_directory(staging, target):
    """Move the complete directory `staging` to `target`, replacing what is there; the old version is deleted last."""
    staging, target = Path(staging), Path(target)
    previous = staging.with_name(f"{staging.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        os.rename(target, previous)
    os.rename(staging, target)
    shutil.rmtree(previous, ignore_errors=True)


@contextmanager
def atomic_directory(path):
    """Yield an empty temporary directory to fill; when the block ends without an error, it replaces `path`.

    The temporary name is the same for every process: one writer per `path` at a time (the main process)."""
    staging = partial_path(path, unique=False)
    shutil.rmtree(staging, ignore_errors=True)  # left behind by a killed write
    staging.mkdir(parents=True)
    try:
        yield staging
        replace_directory(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged_into(directory):
    """Yield an empty hidden folder inside `directory` to write files (or folders) into; when the block ends without
    an error, each replaces its namesake in `directory` by rename, so a kill leaves every file either old or new."""
    directory = Path(directory)
    staging = directory / f".staged{PARTIAL_SUFFIX}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        for entry in sorted(staging.iterdir()):
            if entry.is_dir():
                replace_directory(entry, directory / entry.name)
            else:
                os.replace(entry, directory / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_leftovers(path):
    """Delete the temporary versions of `path` that killed writers left behind; a running process's is kept."""
    path = Path(path)
    for leftover in path.parent.glob(f".{glob.escape(path.name)}{PARTIAL_SUFFIX}*"):
        owner = re.match(r"-(\d+)", leftover.name[len(path.name) + 1 + len(PARTIAL_SUFFIX):])
        if owner is not None and _is_running(int(owner[1])):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _is_running(pid):
    if pid == os.getpid() or os.name != "posix":  # without a POSIX signal 0 there is no safe check: keep it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True

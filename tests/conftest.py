"""Shared fixtures: tiny towers saved to temp dirs and loaded by path, like Hub ids, with the Hub switched off."""

import atexit
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Remote code is cached under HF_HOME; keep it out of the user's cache and never touch the network.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="m2sa-hf-home-")
os.environ["HF_HUB_OFFLINE"] = "1"
# Gradio keeps uploads in one shared folder by default (/tmp/gradio, by content hash): under `pytest -n N` two workers'
# Spaces would write and read the same upload at once. Each test process (and what it starts) gets its own.
os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="m2sa-gradio-")
for folder in (os.environ["HF_HOME"], os.environ["GRADIO_TEMP_DIR"]):  # this process's own: gone when it ends
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under `pytest -n N` the workers share the cores: each one (and every process it starts) gets its share of them,
# since torch's default of one thread per core in every worker oversubscribes the CPU many times over.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # imported before this file by a plugin: too late for the variables
        sys.modules["torch"].set_num_threads(threads)
sys.path.insert(0, str(REPO_ROOT))
from benchmarks import harness  # noqa: E402  (importable from the repository root, put on the path above)

free_port = harness.free_port  # the tests' servers pick their port as the benchmarks' do

TOKENIZER_TEXTS = [
    "I love this so much, best day ever!",
    "This is terrible, I hate waiting in line.",
    "The meeting is at 10 am tomorrow.",
    "Ich liebe dieses Wetter, wunderbar!",
    "Das ist schrecklich und langweilig.",
    "Der Zug kommt um acht Uhr.",
    "Me encanta esta canción, qué bonita.",
    "Odio los lunes, todo sale mal.",
    "La reunión es el martes por la tarde.",
    "J'adore ce film, il est génial !",
    "C'est nul, je déteste ça.",
    "Le train part à midi.",
    "Adoro questa pizza, fantastica!",
    "Che schifo, pessimo servizio.",
    "Il negozio apre alle nove.",
    "Eu amo o verão, que alegria!",
    "Que horrível, estou muito triste.",
    "A loja fecha às seis.",
    "أحب هذا اليوم الجميل",
    "هذا سيء جدا وحزين",
    "我非常喜欢这个电影",
    "这个服务太糟糕了",
    "@user check this out http://t.co/abc #happy 😀",
]


BLOCK_PACKAGE_IMPORTS = (
    "import sys\n"
    "sys.modules['modeling_m2sa'] = None  # importing the package now fails: only saved remote code can be used\n"
    "sys.modules['m2sa_training'] = None\n"
)


def run_without_package(script, *args, cwd):
    """Run a Python `script` in a fresh process where this package cannot be imported; fail with its stderr."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_PACKAGE_IMPORTS + script, *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    return result


FRESH_PROCESS_LOGITS = (
    "import json, torch\n"
    "from PIL import Image\n"
    "from transformers import AutoModelForSequenceClassification, AutoProcessor\n"
    "model_dir, inputs, out = sys.argv[1:4]\n"
    "spec = json.load(open(inputs))\n"
    "model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()\n"
    "processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)\n"
    "images = [Image.open(p) if p else None for p in spec['images']]\n"
    "with torch.no_grad():\n"
    "    torch.save(model(**processor(text=spec['texts'], images=images)).logits, out)\n"
)


def logits_in_a_fresh_process(model_dir, texts, image_paths, work_dir, also_block=()):
    """Logits of the model saved in `model_dir`, loaded with `trust_remote_code=True` in a fresh process where this
    package (and the modules named in `also_block`) cannot be imported; `image_paths` holds "" for no image."""
    import torch

    inputs_path = Path(work_dir) / "inputs.json"
    inputs_path.write_text(json.dumps({"texts": texts, "images": image_paths}))
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in also_block)
    logits_path = Path(work_dir) / "logits.pt"
    result = run_without_package(blocked + FRESH_PROCESS_LOGITS, model_dir, inputs_path, logits_path, cwd=work_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(logits_path)


def kill_training_after_its_first_checkpoint(flags, output_dir, run_name="multimodal-seed42"):
    """Run `train.py flags --output-dir output_dir` in a new process, SIGKILL it as soon as its first epoch checkpoint
    is complete, and return the run's directory (to resume from)."""
    run_dir = Path(output_dir) / "runs" / run_name
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), *flags, "--output-dir", str(output_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "epoch-1" / "trainer_state.json").is_file():
        assert process.poll() is None and time.time() < deadline, "training ended before its first checkpoint"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return run_dir


def macro_f1_by_cue(model_dir, rows, image_column="image", label_column="label"):
    """Macro-F1 of the classifier saved in `model_dir` on `rows` (a `datasets` split with a `text` column): as they are
    ("both"), with every image withheld ("without_images"), and with the text of every tweet that has an image
    blanked ("without_texts"; a tweet without one keeps its text, or there would be nothing to classify). The demo
    set's label is sign(text cue + image cue): a model that learned a cue loses when it cannot see it, and one that
    ignores a modality scores the same without it."""
    from m2sa_training.evaluation.metrics import compute_metrics
    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor, predict

    model = M2SAForSequenceClassification.from_pretrained(model_dir).eval()
    processor = M2SAProcessor.from_pretrained(model_dir)
    texts, images, labels = list(rows["text"]), list(rows[image_column]), list(rows[label_column])
    inputs = {"both": (texts, images), "without_images": (texts, None),
              "without_texts": (["" if image is not None else text for text, image in zip(texts, images)], images)}
    scores = {}
    for name, (tweet_texts, tweet_images) in inputs.items():
        results = predict(model, processor, tweet_texts, tweet_images, backend="fp32")
        predictions = [model.config.label2id[result["label"]] for result in results]
        scores[name] = compute_metrics(labels, predictions, ["und"] * len(labels))["overall"]["macro_f1"]
    return scores


def tiny_text_tower_texts():
    """Enough text for a small tokenizer: the sentences above, repeated with small variations."""
    return [f"{text} {index}" for index in range(8) for text in TOKENIZER_TEXTS]


@pytest.fixture(scope="session")
def tiny_towers(tmp_path_factory):
    """Paths of small saved towers: `xlm-roberta`, `bert` text towers; `clip`, `clip-full`, `dinov2`, `siglip` vision towers."""
    from m2sa_training.training.tiny_towers import save_tiny_text_tower, save_tiny_vision_tower

    root = tmp_path_factory.mktemp("towers")
    texts = tiny_text_tower_texts()
    paths = {}
    for kind in ("xlm-roberta", "bert"):
        paths[kind] = str(save_tiny_text_tower(root / kind, texts, kind=kind, vocab_size=300))
    for kind in ("clip", "clip-full", "dinov2", "siglip"):
        paths[kind] = str(save_tiny_vision_tower(root / kind, kind=kind))
    return paths


@pytest.fixture(scope="session")
def tiny_model_and_processor(tiny_towers):
    """An XLM-R + CLIP M2SA classifier and its processor, built from the tiny towers (eval mode)."""
    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

    model = M2SAForSequenceClassification.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip"]).eval()
    processor = M2SAProcessor.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip"])
    return model, processor


@pytest.fixture(scope="session")
def spread_model_and_processor(tiny_towers):
    """An XLM-R + CLIP classifier whose answers are spread as a trained model's are (eval mode, seeded): the tiny
    model with every weight moved by N(0, 0.02^2) noise (no bias stays 0) and its classifier's weight scaled by 20, so
    that its logits for one tweet lie several units apart. An untrained model's probabilities all sit near 1/3, where
    any arithmetic, however wrong, agrees within a few hundredths."""
    import torch

    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

    torch.manual_seed(0)
    model = M2SAForSequenceClassification.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip"])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
        model.head.classifier.weight.mul_(20)
    return model.eval(), M2SAProcessor.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip"])


@pytest.fixture(scope="session")
def saved_tiny_model_dir(tiny_model_and_processor, tmp_path_factory):
    """The tiny XLM-R + CLIP classifier and its processor saved together, loadable by path like a Hub id."""
    model, processor = tiny_model_and_processor
    directory = tmp_path_factory.mktemp("saved-tiny-model")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def image_files(tmp_path_factory):
    """Small image files by name: `red` (RGB), `green` (RGBA), `noise` (varied pixels) and `corrupt` (not an image)."""
    from PIL import Image

    directory = tmp_path_factory.mktemp("images")
    images = {"red": Image.new("RGB", (40, 30), "red"), "green": Image.new("RGBA", (20, 20), "green"),
              "noise": Image.effect_noise((64, 48), 60)}
    paths = {}
    for name, image in images.items():
        paths[name] = str(directory / f"{name}.png")
        image.save(paths[name])
    paths["corrupt"] = str(directory / "corrupt.jpg")
    (directory / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return paths


MAIN_JOB = "python train.py"  # the README's main job, run verbatim by `main_job_workdir`
MAIN_JOB_TIMEOUT = 900


def main_job_root(config, tmp_path_factory=None):
    """Where the main job runs: next to the xdist workers' temporary directories (shared by all workers of a test
    run), or in this session's temporary directory; pytest removes old ones as it does its own."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        return Path(config.option.basetemp).parent / "main-job"
    return tmp_path_factory.getbasetemp() / "main-job"


def copy_of_the_checkout(directory):
    """`directory` holding copies of the entry points the docs run from a checkout: `train.py`, `space/` and
    `dataset_script/` (the packages themselves are installed)."""
    directory.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "train.py", directory)
    for folder in ("space", "dataset_script"):
        shutil.copytree(REPO_ROOT / folder, directory / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return directory


def start_main_job(root):
    """Start `python train.py` in the background in a `copy_of_the_checkout` (so the docs' commands run there as from a
    checkout), once per test run whichever worker asks first; returns the working directory. The job's exit status
    lands in `job.rc` next to it."""
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    workdir = root / "workdir"
    with FileLock(str(root / "start.lock")):
        if not workdir.is_dir():
            partial = root / "workdir.partial"
            shutil.rmtree(partial, ignore_errors=True)
            copy_of_the_checkout(partial).rename(workdir)
            arguments = MAIN_JOB.split(maxsplit=1)[1]
            command = f"{shlex.quote(sys.executable)} {arguments} > ../job.log 2>&1; echo $? > ../job.rc"
            subprocess.Popen(["/bin/sh", "-c", command], cwd=workdir, start_new_session=True,
                             stdin=subprocess.DEVNULL)
    return workdir


@pytest.hookimpl(trylast=True)  # after `-k` / `-m` have deselected what will not run
def pytest_collection_modifyitems(config, items):
    """Under `pytest -n N`, start the main job as soon as a collected test needs it, so that it trains while the
    workers run other tests (each process on its share of the cores) instead of holding a worker up."""
    if "PYTEST_XDIST_WORKER" in os.environ and any("main_job_workdir" in item.fixturenames for item in items):
        start_main_job(main_job_root(config))


@pytest.fixture(scope="session")
def main_job_workdir(request, tmp_path_factory):
    """The working directory where the README's main job, `python train.py`, ran as written: it holds what the job
    wrote, `outputs/m2sa-demo` and `.cache/m2sa/demo-dataset`. The job runs once per test run."""
    workdir = start_main_job(main_job_root(request.config, tmp_path_factory))
    status = workdir.parent / "job.rc"
    deadline = time.time() + MAIN_JOB_TIMEOUT
    while not status.is_file() or not status.read_text().strip():
        assert time.time() < deadline, f"{MAIN_JOB} did not finish within {MAIN_JOB_TIMEOUT} s"
        time.sleep(1)
    log = (workdir.parent / "job.log").read_text()
    assert status.read_text().strip() == "0", log[-3000:]
    return workdir

"""`python -m m2sa_training.score`: a corpus in, labelled Parquet shards out; URL images from a loopback server, kills
at a write, 2 processes, streaming, refused reruns and bad inputs."""

import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time

import datasets
import pytest
from PIL import Image

from conftest import REPO_ROOT, TOKENIZER_TEXTS
from m2sa_training.score import images as scoring_images
from m2sa_training.score.run import main
from m2sa_training.score.progress import Progress
from modeling_m2sa.images_m2sa import ImageLimits

SHARD_SIZE = "16"
LIMITS = ["--image-timeout", "1.5", "--image-max-bytes", "60000"]


def png_bytes(size, colour):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGE_BODIES = {"/ok.png": png_bytes((32, 24), "blue"), "/slow.png": png_bytes((8, 8), "red"),
                "/flaky.png": png_bytes((16, 16), "green"), "/page.html": b"<html>not an image</html>" * 20,
                "/huge.png": os.urandom(100_000)}  # fmt: skip


class ImageServer(http.server.BaseHTTPRequestHandler):
    """/ok.png, /missing.png (404), /slow.png (answers after 5 s), /huge.png (over the byte cap), /page.html (not an
    image), /flaky.png (503 on the first request of each URL, then the image)."""

    requests_seen = {}

    def do_GET(self):
        seen = ImageServer.requests_seen
        seen[self.path] = seen.get(self.path, 0) + 1
        path = self.path.split("?")[0]
        if path == "/slow.png":
            time.sleep(5)
        if path == "/missing.png" or (path == "/flaky.png" and seen[self.path] == 1):
            self.send_error(404 if path == "/missing.png" else 503)
            return
        body = IMAGE_BODIES.get(path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png" if path.endswith(".png") else "text/html")
        if path != "/huge.png":  # the byte cap must hold while reading, without a Content-Length too
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first: the timeout and byte cap cases
            pass

    def log_message(self, *args):
        pass


class LoopbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default of 5 drops concurrent connections (each retried after 1 s)


@pytest.fixture(scope="module")
def image_server():
    server = LoopbackServer(("127.0.0.1", 0), ImageServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


EXPECTED_IMAGE_CODES = {"ok.png": None, "missing.png": "http_error", "slow.png": "timeout", "huge.png": "too_large",
                        "page.html": "undecodable", "flaky.png": None, "gone.jpg": "missing_file",
                        "red.png": None}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, image_server):
    """A JSONL corpus of 56 tweets whose image column mixes URLs (good and broken; row 2's times out), a relative path,
    a missing file and no image; rows 50-52 have no text (one with no image at all, one with a broken URL, one with a
    good image)."""
    root = tmp_path_factory.mktemp("corpus")
    Image.new("RGB", (40, 30), "red").save(root / "red.png")
    images = [f"{image_server}/{name}" for name in EXPECTED_IMAGE_CODES if name not in ("gone.jpg", "red.png",
                                                                                         "slow.png")]
    images += ["red.png", "gone.jpg", "", None]
    rows = [{"tweet_id": f"id-{index}", "text": TOKENIZER_TEXTS[index % len(TOKENIZER_TEXTS)],
             "language": ["en", "de", "es"][index % 3], "image": images[index % len(images)]}
            for index in range(56)]  # fmt: skip
    rows[2]["image"] = f"{image_server}/slow.png"  # once: each costs two timeouts
    rows[50].update(text="", image=None)
    rows[51].update(text="", image=f"{image_server}/missing.png")
    rows[52].update(text="  ", image=f"{image_server}/ok.png")
    path = root / "tweets.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, rows


def score(model_dir, dataset, output_dir, *flags):
    main(["--model", str(model_dir), "--dataset", str(dataset), "--output-dir", str(output_dir),
          "--shard-size", SHARD_SIZE, "--batch-size", "8", *LIMITS, *flags])


def shard_bytes(output_dir):
    return {path.name: path.read_bytes() for path in sorted((output_dir / "data").glob("*.parquet"))}


@pytest.fixture(scope="module")
def scored(saved_tiny_model_dir, corpus, tmp_path_factory):
    """The corpus labelled once, uninterrupted, by one process: (output dir, its shards' bytes)."""
    output_dir = tmp_path_factory.mktemp("scored") / "labels"
    score(saved_tiny_model_dir, corpus[0], output_dir)
    return output_dir, shard_bytes(output_dir)


def test_every_row_is_labelled_in_order_with_its_image_status(scored, corpus, saved_tiny_model_dir):
    from transformers import pipeline

    output_dir, shards = scored
    _, rows = corpus
    assert list(shards) == [f"train-{index:05d}.parquet" for index in range(4)]  # 56 rows in shards of 16
    labels = datasets.load_dataset(str(output_dir), split="train")
    assert labels["row_index"] == list(range(56))
    assert labels["tweet_id"] == [row["tweet_id"] for row in rows]
    assert labels["language"] == [row["language"] for row in rows]
    for row, labelled in zip(rows, labels):
        name = (row["image"] or "").rsplit("/", 1)[-1]
        if row["text"].strip() == "" and labelled["image_used"] is False:
            assert labelled["label"] is None and labelled["unscored_reason"] == "empty_tweet"
            continue
        assert labelled["image_error_code"] == EXPECTED_IMAGE_CODES.get(name), (row, labelled)
        assert labelled["image_used"] == (name in EXPECTED_IMAGE_CODES and EXPECTED_IMAGE_CODES[name] is None)
        assert (labelled["image_error"] is None) == (labelled["image_error_code"] is None)
    assert [labels[50]["unscored_reason"], labels[51]["unscored_reason"], labels[52]["unscored_reason"]] == [
        "empty_tweet", "empty_tweet", None]
    assert labels[51]["image_error_code"] == "http_error" and "HTTP 404" in labels[51]["image_error"]
    assert labels[52]["image_used"] and labels[52]["label"] is not None

    # The labels and probabilities are the pipeline's for the same tweets, with the images the fetch gave, handed to
    # it as the command does: per chunk (here, per shard of 16 rows), in batches of 8.
    pipe = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True)
    for first in range(0, 56, int(SHARD_SIZE)):
        scored_rows = [index for index in range(first, min(first + int(SHARD_SIZE), 56))
                       if labels[index]["label"] is not None]
        tweets = [{"text": rows[index]["text"], "image": used_image(rows[index]["image"], corpus[0].parent)
                   if labels[index]["image_used"] else None} for index in scored_rows]  # fmt: skip
        for index, ranked in zip(scored_rows, pipe(tweets, top_k=None, batch_size=8)):
            assert labels[index]["label"] == ranked[0]["label"]
            for name, probability in pipe.scores_by_label(ranked).items():
                assert labels[index][f"probability_{name}"] == pytest.approx(probability, abs=1e-6)


def used_image(value, root):
    """What a usable image value of the corpus stands for: a served image's bytes, or the local file."""
    name = value.rsplit("/", 1)[-1]
    return IMAGE_BODIES[f"/{name}"] if value.startswith("http") else str(root / value)


def test_report_counts_rows_labels_languages_and_image_errors(scored):
    output_dir, _ = scored
    report = json.loads((output_dir / "scoring_report.json").read_text())
    labels = datasets.load_dataset(str(output_dir), split="train")
    assert report["rows_in"] == report["summary"]["rows_out"] == 56
    for name, mean in report["summary"]["mean_probability"].items():  # over the labelled rows
        assert mean == pytest.approx(sum(filter(None, labels[f"probability_{name}"])) / 54)
    counted = {name: labels["label"].count(name) for name in report["summary"]["labels"]}
    assert report["summary"]["labels"] == counted and sum(counted.values()) == 54
    assert report["summary"]["unscored"] == {"empty_tweet": 2}
    codes = [code for code in labels["image_error_code"] if code]
    assert report["summary"]["image_errors"] == {code: codes.count(code) for code in sorted(set(codes))}
    assert set(report["summary"]["image_errors"]) == {"http_error", "timeout", "too_large", "undecodable",
                                                      "missing_file"}
    assert sum(sum(counts.values()) for counts in report["summary"]["per_language"].values()) == 56
    assert report["summary"]["per_language"]["es"]["unscored"] == 1  # row 50 (no text, no image)
    assert report["summary"]["per_language"]["en"]["unscored"] == 1  # row 51 (no text, its image a 404)
    assert report["this_run"]["shards_written"] == 4 and report["this_run"]["rows_scored"] == 56
    assert "train" in (output_dir / "README.md").read_text()


def test_a_finished_output_is_not_redone(scored, saved_tiny_model_dir, corpus, capsys):
    output_dir, shards = scored
    before = {name: (output_dir / "data" / name).stat().st_mtime_ns for name in shards}
    score(saved_tiny_model_dir, corpus[0], output_dir)
    assert "0 in this run" in capsys.readouterr().out
    assert {name: (output_dir / "data" / name).stat().st_mtime_ns for name in shards} == before


def test_a_rerun_with_other_options_is_refused_naming_them(scored, saved_tiny_model_dir, corpus):
    output_dir, _ = scored
    with pytest.raises(SystemExit, match=r"batch_size: 8 before, 4 now.*Rerun with the same options"):
        main(["--model", str(saved_tiny_model_dir), "--dataset", str(corpus[0]), "--output-dir", str(output_dir),
              "--shard-size", SHARD_SIZE, "--batch-size", "4", *LIMITS])
    with pytest.raises(SystemExit, match=r"image_limits: .*'timeout': 1.5.* before, .*'timeout': 2.0"):
        score(saved_tiny_model_dir, corpus[0], output_dir, "--image-timeout", "2")


def test_streaming_writes_the_same_bytes(scored, saved_tiny_model_dir, corpus, tmp_path):
    _, shards = scored
    score(saved_tiny_model_dir, corpus[0], tmp_path / "streamed", "--streaming")
    assert shard_bytes(tmp_path / "streamed") == shards


KILL_AT_A_WRITE = """
import os, signal, sys
import pyarrow.parquet as pq
kill_at, argv = int(sys.argv[1]), sys.argv[2:]
write_table, writes = pq.write_table, []

def write_then_die(table, where, **options):
    writes.append(where)
    if len(writes) == kill_at:  # half the shard is on disk under its temporary name, then SIGKILL
        write_table(table.slice(0, table.num_rows // 2), where, **options)
        os.kill(os.getpid(), signal.SIGKILL)
    write_table(table, where, **options)

pq.write_table = write_then_die
from m2sa_training.score.run import main
main(argv)
"""


@pytest.mark.parametrize("kill_at", [1, 3])
def test_a_kill_at_a_write_then_a_rerun_gives_the_uninterrupted_bytes(kill_at, scored, saved_tiny_model_dir, corpus,
                                                                       tmp_path):
    _, shards = scored
    output_dir = tmp_path / "labels"
    flags = ["--model", str(saved_tiny_model_dir), "--dataset", str(corpus[0]), "--output-dir", str(output_dir),
             "--shard-size", SHARD_SIZE, "--batch-size", "8", *LIMITS]
    killed = subprocess.run([sys.executable, "-c", KILL_AT_A_WRITE, str(kill_at), *flags], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert len(shard_bytes(output_dir)) == kill_at - 1  # the half-written shard is not there under its name
    assert list((output_dir / "data").glob(".*partial*"))  # ... but its temporary file is
    score(saved_tiny_model_dir, corpus[0], output_dir)
    assert shard_bytes(output_dir) == shards
    report = json.loads((output_dir / "scoring_report.json").read_text())
    assert report["this_run"]["shards_already_done"] == kill_at - 1


@pytest.mark.parametrize("streaming", [False, True])
def test_two_processes_write_the_same_bytes_as_one(streaming, scored, saved_tiny_model_dir, corpus, tmp_path):
    """Shards split by Accelerate (a `Dataset`) or round-robin over the stream (`--streaming`)."""
    _, shards = scored
    output_dir = tmp_path / "labels"
    # `accelerate launch --cpu` starts one process (more need mpirun); its torchrun launcher with the CPU flag does 2
    environment = {**os.environ, "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
         "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "m2sa_training.score",
         "--model", str(saved_tiny_model_dir), "--dataset", str(corpus[0]), "--output-dir", str(output_dir),
         "--shard-size", SHARD_SIZE, "--batch-size", "8", *LIMITS, *(["--streaming"] if streaming else [])],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert shard_bytes(output_dir) == shards
    report = json.loads((output_dir / "scoring_report.json").read_text())
    assert report["this_run"]["processes"] == 2
    assert result.stdout.count("rows labelled") == 1  # the summary comes from the main process only


def test_a_datasets_image_column_and_the_dataset_config(saved_tiny_model_dir, tmp_path):
    """A `dataset_script`-style Parquet build with an Image column (embedded bytes and nulls) and two configs."""
    for config, colour in (("en", "red"), ("de", "blue")):
        rows = datasets.Dataset.from_dict(
            {"text": [f"{config} tweet {index}" for index in range(5)],
             "image": [png_bytes((20, 20), colour) if index % 2 else None for index in range(5)]},
            features=datasets.Features({"text": datasets.Value("string"), "image": datasets.Image()}),
        )
        rows.to_parquet(str(tmp_path / "data" / config / "test.parquet"))
    (tmp_path / "data" / "README.md").write_text(
        "---\nconfigs:\n" + "".join(f"- config_name: {config}\n  data_files:\n  - split: test\n    path: {config}/*\n"
                                    for config in ("en", "de")) + "---\n")
    with pytest.raises(SystemExit, match=r"has 2 configs \(en, de\); choose one with --dataset-config"):
        score(saved_tiny_model_dir, tmp_path / "data", tmp_path / "refused")
    score(saved_tiny_model_dir, tmp_path / "data", tmp_path / "labels", "--dataset-config", "de")
    labels = datasets.load_dataset(str(tmp_path / "labels"), split="test")
    assert labels["image_used"] == [False, True, False, True, False]
    assert labels["image_error_code"] == [None] * 5


@pytest.mark.parametrize("flags, message", [
    (["--text-column", "body"], r"There is no column 'body' .*its columns: .*text.*--text-column"),
    (["--id-column", "id_str"], r"There is no column 'id_str'.*--id-column"),
    (["--split", "test"], r"has no split 'test'; its splits: train"),
    (["--batch-size", "0"], r"--batch-size must be at least 1"),
])
def test_bad_options_are_refused_with_what_to_do(flags, message, saved_tiny_model_dir, corpus, tmp_path):
    with pytest.raises(SystemExit, match=message):
        score(saved_tiny_model_dir, corpus[0], tmp_path / "labels", *flags)


@pytest.mark.parametrize("streaming", [False, True])
def test_an_empty_dataset_is_refused(streaming, saved_tiny_model_dir, tmp_path):
    (tmp_path / "empty.csv").write_text("text,image\n")
    with pytest.raises(SystemExit, match="has no rows: there is nothing to label"):
        score(saved_tiny_model_dir, tmp_path / "empty.csv", tmp_path / "labels", *(["--streaming"] if streaming else []))


def test_an_output_dir_with_other_files_is_refused(saved_tiny_model_dir, corpus, tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="is not empty and holds no scoring_options.json"):
        score(saved_tiny_model_dir, corpus[0], tmp_path / "labels")


def test_the_scorer_and_the_space_take_the_image_caps_from_the_model_code(saved_tiny_model_dir):
    """One owner, `images_m2sa`: the scorer imports it, the Space finds it next to the served model's processor."""
    sys.path.insert(0, str(REPO_ROOT / "space"))
    import app as space_app

    from modeling_m2sa import images_m2sa

    space_rules = space_app.image_rules(space_app.load_pipeline(str(saved_tiny_model_dir)))
    assert space_rules is images_m2sa
    assert (images_m2sa.MAX_IMAGE_SIDE, images_m2sa.MAX_IMAGE_PIXELS, images_m2sa.MAX_IMAGE_BYTES) == (
        4096, 4096 * 4096, 20 * 2**20)
    limits = images_m2sa.ImageLimits()  # the scorer's defaults, and the deploy handler's
    assert (limits.max_pixels, limits.max_bytes) == (images_m2sa.MAX_IMAGE_PIXELS, images_m2sa.MAX_IMAGE_BYTES)


def test_a_retry_fetches_what_failed_once(image_server):
    first = scoring_images.ready_image(f"{image_server}/flaky.png?once", None, ImageLimits(retries=0))
    assert first.code == "http_error" and "503" in first.message
    retried = scoring_images.ready_image(f"{image_server}/flaky.png?twice", None,
                                         ImageLimits(retries=1))
    assert retried.usable and Image.open(io.BytesIO(retried.image)).size == (16, 16)


def test_progress_in_a_log_is_plain_lines_with_rate_and_eta():
    stream = io.StringIO()
    progress = Progress(100, stream=stream, label="labelling")
    progress.advance(40)
    progress.advance(20)  # within LOG_INTERVAL_SECONDS of the first line: no second line
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert lines[0].startswith("labelling: 40 of 100 rows (40%)") and "rows/s, ETA" in lines[0]
    assert lines[1].startswith("labelling: 60 of 100 rows (60%)")


def test_push_to_hub_uploads_the_card_report_and_shards(scored, saved_tiny_model_dir, corpus, monkeypatch):
    """The upload's arguments (the Hub itself cannot be reached here): a dataset repo, and the files that make it
    loadable."""
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **options: calls.append(
        ("create_repo", repo_id, options)))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **options: calls.append(
        ("upload_folder", options["repo_id"], options)))
    output_dir, _ = scored
    score(saved_tiny_model_dir, corpus[0], output_dir, "--push-to-hub", "org/tweets-sentiment", "--hub-private")
    (_, repo, created), (_, uploaded_to, upload) = calls
    assert repo == uploaded_to == "org/tweets-sentiment"
    assert created["repo_type"] == upload["repo_type"] == "dataset" and created["private"] is True
    assert upload["folder_path"] == str(output_dir)
    assert set(upload["allow_patterns"]) == {"README.md", "scoring_report.json", "data/*.parquet"}


def test_a_text_only_model_labels_the_text_and_leaves_the_images(tiny_towers, corpus, tmp_path, caplog):
    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

    model_dir = tmp_path / "text-only-model"
    M2SAForSequenceClassification.from_towers(tiny_towers["bert"]).save_pretrained(model_dir)
    M2SAProcessor.from_towers(tiny_towers["bert"]).save_pretrained(model_dir)
    score(model_dir, corpus[0], tmp_path / "labels")
    labels = datasets.load_dataset(str(tmp_path / "labels"), split="train")
    assert not any(labels["image_used"]) and labels["image_error_code"] == [None] * 56
    assert [index for index, reason in enumerate(labels["unscored_reason"]) if reason] == [50, 51, 52]
    assert "is a text-only model: the images in column 'image' are not read" in caplog.text

"""The Space's limits: caps on what an upload may decompress to, the server's memory during a request, and answers
under concurrent use. The memory tests run the app as its own process (`python space/app.py --model DIR`) and read
its resident memory from /proc."""

import io
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.harness import memory_mb
from conftest import REPO_ROOT, free_port
from modeling_m2sa import images_m2sa, predict
from test_space import LABELS, TWEET, classify, classify_file, read_csv

sys.path.insert(0, str(REPO_ROOT / "space"))
import app as space_app  # noqa: E402  (space/ is a Space repo, not a package)
import batch_files  # noqa: E402

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.utils import QueueError  # noqa: E402

RSS_BOUND_MB = 400  # the bound README's "Reliability" section documents: RSS over idle during any single request
CLIENTS = 16
GIGABYTE_BMPS = 110  # black 2500 x 2500 BMPs, 18 MB each (under the per-image cap): 2 GB unzipped, 2 MB zipped
MAX_SIDE_PNGS = 32  # black 4096 x 4096 PNGs, 48 kB each, at the pixel cap: 2 GB as decoded RGBA
NEEDS_PROC = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads memory from Linux's /proc")


def reset_peak(pid):
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("limit-uploads")
    Image.new("RGB", (48, 32), "red").save(root / "red.png")
    Image.new("RGB", (images_m2sa.MAX_IMAGE_SIDE + 1, images_m2sa.MAX_IMAGE_SIDE), "white").save(root / "wide.png")
    Image.new("1", (20_000, 20_000)).save(root / "bomb.png")
    return root


@pytest.fixture(scope="module")
def server(saved_tiny_model_dir, images, tmp_path_factory):
    """The app launched as its own process on the tiny model; (client, pid, idle RSS in MB after a first request of
    each kind)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "space" / "app.py"), "--model", str(saved_tiny_model_dir)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=log_path.parent,
        )
    deadline = time.time() + 300
    while True:
        assert process.poll() is None, f"the app exited:\n{log_path.read_text()[-3000:]}"
        try:
            client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
            break
        except Exception:  # noqa: BLE001  (not listening yet)
            assert time.time() < deadline, f"the app did not start:\n{log_path.read_text()[-3000:]}"
            time.sleep(1)
    tweets = images / "warm-up.csv"
    tweets.write_text("text,image\nhello,red.png\nworld,\n")
    classify(client, TWEET, images / "red.png")
    classify_file(client, tweets, [images / "red.png"])
    yield client, process.pid, memory_mb(process.pid, "VmRSS")
    process.terminate()
    process.wait(timeout=60)


def measured(server, request):
    """Run `request()` against the server; return its result and the server's peak RSS over idle during it (MB)."""
    _, pid, idle_mb = server
    reset_peak(pid)
    result = request()
    growth = memory_mb(pid, "VmHWM") - idle_mb
    print(f"peak RSS over idle: {growth:.0f} MB (idle {idle_mb:.0f} MB)")
    return result, growth


def assert_still_serving(client, images):
    label, breakdown, message, _ = classify(client, TWEET, images / "red.png")
    assert label["label"] in LABELS and "| both |" in breakdown and message == ""


def zip_of(path, members, compression=zipfile.ZIP_DEFLATED):
    """Write {name: bytes} to a zip at `path`."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def encoded(image, image_format):
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def over_unzipped_cap(images, tmp_path):
    bmp = encoded(Image.new("RGB", (2500, 2500)), "BMP")
    bmps = zip_of(tmp_path / "gigabytes.zip", {f"bmp/{i}.bmp": bmp for i in range(GIGABYTE_BMPS)})
    return ("text,image\n" + "".join(f"t,bmp/{i}.bmp\n" for i in range(GIGABYTE_BMPS)), [bmps],
            f"gigabytes.zip brings the uploaded zips to {GIGABYTE_BMPS * len(bmp) / 2**20:,.0f} MB uncompressed, over "
            f"the cap of 256 MB for all zips together; upload smaller images")


def over_members_cap(images, tmp_path):
    many = zip_of(tmp_path / "many.zip", {f"{i}.png": b"" for i in range(batch_files.MAX_ZIP_MEMBERS + 1)})
    return ("text,image\nhello,0.png\n", [many],
            "many.zip brings the uploaded zips to 10,001 files, over the cap of 10,000 files in all zips together")


def over_image_bytes_cap(images, tmp_path):
    large = zip_of(tmp_path / "large.zip", {"large.png": bytes(images_m2sa.MAX_IMAGE_BYTES + 1)})
    return ("text,image\nhello,large.png\n", [large],
            "line 2: image 'large.png' is larger than 20 MB, the cap per image; resize it")


def over_pixels_cap(images, tmp_path):
    return ("text,image\nhello,wide.png\nhi,bomb.png\n", [images / "wide.png", images / "bomb.png"],
            "line 2: image 'wide.png' is 4,097 × 4,096 = 16,781,312 pixels, over this demo's cap of 16,777,216 pixels "
            "(4096 × 4096) per image; resize it\n- line 3: image 'bomb.png' has more than 178,956,970 pixels, over "
            "this demo's cap")


def over_tweets_cap(images, tmp_path):
    return ("text\n" + "hello\n" * (batch_files.MAX_BATCH_TWEETS + 1), [],
            "holds 5001 tweets; this demo classifies at most 5000 per file: split it")


OVER_CAP = {"unzipped": over_unzipped_cap, "members": over_members_cap, "image_bytes": over_image_bytes_cap,
            "pixels": over_pixels_cap, "tweets": over_tweets_cap}  # cap: (tweets file, uploads, the cap's message)


@NEEDS_PROC
@pytest.mark.parametrize("cap", OVER_CAP)
def test_upload_over_a_cap_is_refused_naming_it_within_the_memory_bound(server, images, tmp_path, cap):
    client = server[0]
    text, uploads, expected = OVER_CAP[cap](images, tmp_path)
    tweets = tmp_path / f"{cap}.csv"
    tweets.write_text(text)
    (message, preview, predictions), growth = measured(server, lambda: classify_file(client, tweets, uploads))
    assert message.startswith(f"⚠️ **{cap}.csv can't be classified:**") and expected in message
    assert not preview["data"] and predictions is None
    assert growth < RSS_BOUND_MB
    assert_still_serving(client, images)


@NEEDS_PROC
def test_batch_decoding_to_gigabytes_is_classified_within_the_memory_bound(server, images, tiny_model_and_processor,
                                                                           tmp_path):
    """32 images at the pixel cap decode to 2 GB of RGBA; read and decoded a batch at a time, they need ~1 image's."""
    client = server[0]
    black = Image.new("RGB", (images_m2sa.MAX_IMAGE_SIDE, images_m2sa.MAX_IMAGE_SIDE))
    png = encoded(black, "PNG")
    photos = zip_of(tmp_path / "photos.zip", {f"photos/{i}.png": png for i in range(MAX_SIDE_PNGS)}, zipfile.ZIP_STORED)
    tweets = tmp_path / "photos.csv"
    tweets.write_text("id,text,image\n" + "".join(f"{i},{TWEET},photos/{i}.png\n" for i in range(MAX_SIDE_PNGS)))
    (message, preview, predictions), growth = measured(server, lambda: classify_file(client, tweets, [photos]))
    assert message == f"✅ Classified {MAX_SIDE_PNGS} tweets."
    rows = read_csv(predictions)
    assert [row["id"] for row in rows] == [str(i) for i in range(MAX_SIDE_PNGS)]
    (expected,) = predict(*tiny_model_and_processor, [TWEET], [black])
    for row in rows:
        assert row["image_used"] == "True" and row["predicted_label"] == expected["label"]
        assert float(row["p_positive"]) == pytest.approx(expected["probabilities"]["positive"], abs=1e-4)
    assert growth < RSS_BOUND_MB


@NEEDS_PROC
def test_tweet_image_over_the_pixel_cap_is_refused_from_its_header(server, images):
    client = server[0]
    (label, breakdown, message, _), growth = measured(server, lambda: classify(client, TWEET, images / "wide.png"))
    assert not label.get("label") and breakdown == ""
    assert message == ("⚠️ wide.png is too large to decode safely: it is 4,097 × 4,096 = 16,781,312 pixels, over "
                       "this demo's cap of 16,777,216 pixels (4096 × 4096) per image. Resize it, or remove the image "
                       "to classify the text alone.")
    assert growth < RSS_BOUND_MB


def test_16_concurrent_clients_are_all_answered(server, images, tiny_model_and_processor):
    """With the Space's queue (32 waiting at most), 16 clients at once all get the right answer."""
    url = server[0].src
    clients = [gradio_client.Client(url, verbose=False) for _ in range(CLIENTS)]
    jobs = [c.submit(TWEET, gradio_client.handle_file(str(images / "red.png")), api_name="/classify") for c in clients]
    (expected,) = predict(*tiny_model_and_processor, [TWEET], [Image.open(images / "red.png")])
    for job in jobs:
        label, _, message, _ = job.result(timeout=300)
        confidences = {item["label"]: item["confidence"] for item in label["confidences"]}
        assert label["label"] == expected["label"] and message == ""
        assert confidences == pytest.approx(expected["probabilities"], abs=1e-5)


class HeldPipeline:
    """The Space's pipeline, holding every call until `release` is set: requests pile up in the queue on cue."""

    def __init__(self, classify):
        self.classify, self.release = classify, threading.Event()

    def __getattr__(self, name):
        return getattr(self.classify, name)

    def __call__(self, *args, **kwargs):
        self.release.wait(timeout=300)
        return self.classify(*args, **kwargs)


def test_full_queue_answers_with_gradios_queue_full_message(saved_tiny_model_dir, images, tiny_model_and_processor):
    """16 clients at once against a queue of 2, with the model held busy: the requests that fit are answered
    correctly, all others get gradio's queue-full refusal; none gets an error."""
    queue_size = 2
    held = HeldPipeline(space_app.load_pipeline(str(saved_tiny_model_dir)))
    demo = space_app.build_demo(held)
    space_app.serve(demo, queue_size=queue_size, server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        clients = [gradio_client.Client(demo.local_url, verbose=False) for _ in range(CLIENTS)]
        jobs = [c.submit(TWEET, gradio_client.handle_file(str(images / "red.png")), api_name="/classify")
                for c in clients]
        fits = space_app.CONCURRENCY_LIMIT + queue_size
        deadline = time.time() + 120
        while sum(job.done() for job in jobs) < CLIENTS - fits and time.time() < deadline:
            time.sleep(0.1)
        held.release.set()
        (expected,) = predict(*tiny_model_and_processor, [TWEET], [Image.open(images / "red.png")])
        answered, refused = 0, 0
        for job in jobs:
            try:
                label, _, message, _ = job.result(timeout=300)
            except QueueError as error:
                assert str(error) == "Queue is full! Please try again."
                refused += 1
                continue
            assert label["label"] == expected["label"] and message == ""
            answered += 1
        assert answered + refused == CLIENTS
        assert 1 <= answered <= fits and refused >= CLIENTS - fits
    finally:
        held.release.set()
        demo.close()


def test_batches_hold_at_most_one_capped_image_of_pixels(images, tmp_path):
    """Rows are grouped into batches of at most `batch_size` tweets and MAX_IMAGE_PIXELS pixels (one larger image
    alone); zip members are read as bytes, loose files as paths, and text-only rows fill the batches."""
    side = images_m2sa.MAX_IMAGE_SIDE
    images_zip = zip_of(tmp_path / "sizes.zip", {
        "half.png": encoded(Image.new("RGB", (side, side // 2)), "PNG"),
        "quarter.png": encoded(Image.new("RGB", (side // 2, side // 2)), "PNG"),
    })
    tweets = tmp_path / "sizes.csv"
    tweets.write_text("text,image\n" + "".join(f"t{i},{name}\n" for i, name in enumerate(
        ["half.png", "", "half.png", "quarter.png", "", "red.png", "", "", "half.png", ""])))
    with batch_files.read_batch(tweets, [images_zip, images / "red.png"], images_m2sa) as batch:
        batches = list(batch.batches(4))
    assert [[line for line, _ in rows] for rows, _, _ in batches] == [[2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]
    kinds = [[type(image).__name__ for image in batch_images] for _, batch_images, _ in batches]
    assert all(damage is None for _, _, batch_damage in batches for damage in batch_damage)
    assert kinds == [["bytes", "NoneType", "bytes"], ["bytes", "NoneType", "str", "NoneType"],
                     ["NoneType", "bytes", "NoneType"]]


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("long.csv", "text\n" + "a" * (batch_files.MAX_RECORD_CHARS + 1) + "\nok\n",
         ["line 2: the record on this line is longer than 100,000 characters, the cap per tweet; shorten it"]),
        ("long.jsonl", '{"text": "ok"}\n{"text": "' + "a" * batch_files.MAX_RECORD_CHARS + '"}\n',
         ["line 2: the line is longer than 100,000 characters, the cap per tweet; shorten it"]),
        ("wide.csv", "text," + ",".join(f"c{i}" for i in range(batch_files.MAX_COLUMNS)) + "\n",
         ["line 1: the file has 201 or more different fields, over the cap of 200"]),
        ("wide.jsonl", "".join(f'{{"text": "t", "c{i}": 1}}\n' for i in range(batch_files.MAX_COLUMNS)),
         ["line 200: the file has 201 or more different fields, over the cap of 200"]),
        ("deep.jsonl", '{"text": "ok"}\n' + "[" * 50_000 + "\n", ["line 2: JSON nested too deeply to read"]),
        ("junk.jsonl", "not json\n" * 5_000, ["junk.jsonl was read up to line 1000 only: it has 1000 problems by "
                                              "then; fix these first", "- … and 991 more"]),
        ("many.jsonl", '{"text": "t"}\n' * 6_000 + "not json\n", ["many.jsonl holds 6000 tweets; this demo classifies "
                                                                  "at most 5000 per file: split it"]),
    ],
)
def test_tweets_file_caps(tmp_path, name, content, expected):
    tweets = tmp_path / name
    tweets.write_text(content)
    with pytest.raises(batch_files.BatchFileError) as error:
        batch_files.read_batch(tweets, None, images_m2sa)
    for problem in expected:
        assert problem in str(error.value)


def test_a_damaged_zip_member_is_named_as_damaged_not_as_an_unreadable_image(tmp_path):
    png = encoded(Image.new("RGB", (8, 8), "red"), "PNG")
    archive = zip_of(tmp_path / "photos.zip", {"red.png": png}, zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    start = data.index(png)
    data[start + len(png) // 2] ^= 0xFF  # one flipped byte in the stored member: its CRC no longer matches
    archive.write_bytes(bytes(data))
    tweets = tmp_path / "tweets.csv"
    tweets.write_text("text,image\nlook,red.png\n")
    with batch_files.read_batch(tweets, [archive], images_m2sa) as batch:
        ((rows, batch_images, damage),) = list(batch.batches(4))
    assert batch_images == [b""]
    assert damage[0].startswith("is damaged inside photos.zip (Bad CRC-32") and "zip it again" in damage[0]

"""The Gradio Space, launched for real on the tiny model: gradio_client requests and a Chromium browser session."""

import csv
import io
import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO_ROOT, free_port, run_without_package
from modeling_m2sa.labels_m2sa import SYNTHETIC_DEMO_TAG
from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor, M2SASentimentPipeline, predict

sys.path.insert(0, str(REPO_ROOT / "space"))
import app as space_app  # noqa: E402  (space/ is a Space repo, not a package)

gradio_client = pytest.importorskip("gradio_client")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TWEET = "What a lovely day at the beach!"
LABELS = {"negative", "neutral", "positive"}


@pytest.fixture(scope="module")
def space(saved_tiny_model_dir):
    """The app served on a free port, with the model and processor it serves (loaded by path through the model's own
    pipeline, as `--model DIR` does)."""
    classify = space_app.load_pipeline(str(saved_tiny_model_dir))
    demo = space_app.build_demo(classify)
    space_app.serve(demo, server_port=free_port(), prevent_thread_lock=True, quiet=True)
    yield demo, classify.model, classify.processor
    demo.close()


@pytest.fixture(scope="module")
def client(space):
    demo = space[0]
    return gradio_client.Client(demo.local_url, verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and bad uploads: images, a text file (also named .zip), a truncated JPEG, a 20,000 x 20,000 PNG, a zip."""
    root = tmp_path_factory.mktemp("uploads")
    Image.new("RGB", (48, 32), "red").save(root / "red.png")
    Image.new("RGB", (20, 20), "blue").save(root / "blue.jpg")
    (root / "notes.txt").write_text("meeting notes, not a picture")
    shutil.copy(root / "notes.txt", root / "notes.zip")
    jpeg = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(jpeg, format="JPEG")
    (root / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    Image.new("1", (20_000, 20_000)).save(root / "bomb.png")  # 48 kB on disk, 400 megapixels decoded
    with zipfile.ZipFile(root / "images.zip", "w") as archive:
        archive.write(root / "blue.jpg", "pictures/blue.jpg")
    return root


def classify(client, text, image=None):
    return client.predict(text, gradio_client.handle_file(str(image)) if image else None, api_name="/classify")


def assert_still_serving(client, files):
    label, breakdown, message, _ = classify(client, TWEET, files / "red.png")
    assert label["label"] in LABELS and "| both |" in breakdown and message == ""


def test_launch_settings(space):
    demo = space[0]
    assert demo.server_name == "127.0.0.1"
    assert demo.analytics_enabled is False
    assert demo.max_file_size == 25 * 1024 * 1024
    assert demo._queue.default_concurrency_limit == space_app.CONCURRENCY_LIMIT


def test_tweet_with_image_gives_label_and_modality_breakdown(space, client, files):
    _, model, processor = space
    label, breakdown, message, language = classify(client, TWEET, files / "red.png")
    image = Image.open(files / "red.png")
    expected = predict(model, processor, [TWEET, "", TWEET], [None, image, image])
    confidences = {item["label"]: item["confidence"] for item in label["confidences"]}
    assert label["label"] == expected[2]["label"]
    assert confidences == pytest.approx(expected[2]["probabilities"], abs=1e-5)
    rows = breakdown.splitlines()[2:]
    assert [row.split("|")[1].strip() for row in rows] == ["text alone", "image alone", "both"]
    for row, result in zip(rows, expected):
        assert f"**{result['label']}**" in row and f"{100 * result['probabilities']['positive']:.1f}%" in row
    assert message == ""
    # the tiny model records no training languages: the page says the language and that much
    assert language == "Language: **en** (the model does not record which languages it was trained on)."


def test_explain_gives_word_scores_a_heatmap_and_shares(space, client, files):
    _, model, processor = space
    words, heatmap, shares, message = client.predict(TWEET, gradio_client.handle_file(str(files / "red.png")),
                                                     api_name="/explain")
    assert message == ""
    tokens = [entry["token"].strip() for entry in words]
    scores = [entry["class_or_confidence"] for entry in words]
    assert tokens == TWEET.split()
    assert max(abs(score) for score in scores) == pytest.approx(1.0)  # scaled by the largest |attribution|
    with Image.open(files / "red.png") as image:
        (expected,) = predict(model, processor, [TWEET], [image])
    assert f"Why **{expected['label']}**" in shares
    text_share, image_share = map(float, re.findall(r"([\d.]+)%", shares)[:2])
    assert text_share + image_share == pytest.approx(100.0, abs=0.2)
    vision = model.config.vision_config
    with Image.open(heatmap) as overlay:  # the model's square view of the image, enlarged to be seen
        assert overlay.size[0] == overlay.size[1] >= space_app.OVERLAY_SIZE
        assert overlay.size[0] % vision.image_size == 0
    _, _, _, message = client.predict("   ", None, api_name="/explain")
    assert "nothing to classify" in message


def test_text_alone_and_image_alone_show_only_their_row(client, files):
    label, breakdown, _, _ = classify(client, "Der Zug kommt um acht Uhr.")
    assert label["label"] in LABELS and "text alone" in breakdown and "image alone" not in breakdown
    label, breakdown, _, language = classify(client, "", files / "red.png")
    assert label["label"] in LABELS and "image alone" in breakdown and "text alone" not in breakdown
    assert language == ""  # no text: no language to detect


def test_50000_character_text_is_truncated(client, files):
    label, breakdown, message, _ = classify(client, "Qué día tan bonito " * 2_700)  # 51,300 characters
    assert label["label"] in LABELS and "text alone" in breakdown
    assert "first 128 tokens" in message


@pytest.mark.parametrize(
    "text, upload, expected",
    [
        ("   ", None, "nothing to classify"),
        (TWEET, "notes.txt", "notes.txt is not a readable image"),
        (TWEET, "truncated.jpg", "truncated.jpg is not a readable image"),
        (TWEET, "bomb.png", "bomb.png is too large to decode safely"),
    ],
)
def test_bad_input_gets_a_friendly_message_and_the_server_keeps_serving(client, files, text, upload, expected):
    label, breakdown, message, _ = classify(client, text, files / upload if upload else None)
    assert not label.get("label") and breakdown == ""
    assert message.startswith("⚠️") and expected in message and "Traceback" not in message
    assert_still_serving(client, files)


def classify_file(client, tweets, images=()):
    return client.predict(
        gradio_client.handle_file(str(tweets)), [gradio_client.handle_file(str(path)) for path in images],
        api_name="/classify_file",
    )


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_batch_csv_with_images_and_a_zip_returns_a_predictions_file(space, client, files, tmp_path):
    _, model, processor = space
    tweets = tmp_path / "tweets.csv"
    tweets.write_text(
        "id,text,image\n"
        "1,I love this,red.png\n"
        '2,"Odio los lunes, todo sale mal.",pictures/blue.jpg\n'
        "3,Der Zug kommt um acht Uhr.,\n"
        "4,,red.png\n"
        "5,the picture is broken,truncated.jpg\n"
    )
    message, preview, predictions = classify_file(
        client, tweets, [files / "red.png", files / "images.zip", files / "truncated.jpg"]
    )
    assert message.startswith("✅ Classified 5 tweets.") and "Images on line 6 could not be used" in message
    assert [row[0] for row in preview["data"]] == [2, 3, 4, 5, 6]
    rows = read_csv(predictions)
    assert list(rows[0]) == ["id", "text", "image", "predicted_label", "p_negative", "p_neutral", "p_positive",
                             "image_used", "image_error"]
    assert [row["id"] for row in rows] == ["1", "2", "3", "4", "5"]
    assert [row["image_used"] for row in rows] == ["True", "True", "False", "True", "False"]
    assert "truncated.jpg is not a readable image" in rows[4]["image_error"]
    images = [files / "red.png", files / "blue.jpg", None, files / "red.png", None]
    expected = predict(model, processor, [row["text"] for row in rows], [p and Image.open(p) for p in images])
    for row, result in zip(rows, expected):
        assert row["predicted_label"] == result["label"]
        assert float(row["p_positive"]) == pytest.approx(result["probabilities"]["positive"], abs=1e-4)


def test_batch_jsonl_keeps_extra_fields(client, tmp_path):
    tweets = tmp_path / "tweets.jsonl"
    records = [{"text": "J'adore ce film !", "lang": "fr"}, {"text": "这个服务太糟糕了", "lang": "zh", "tags": ["a"]}]
    tweets.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n", encoding="utf-8")
    message, _, predictions = classify_file(client, tweets)
    rows = read_csv(predictions)
    assert message == "✅ Classified 2 tweets."
    assert [(row["text"], row["lang"], row["tags"]) for row in rows] == [
        ("J'adore ce film !", "fr", ""), ("这个服务太糟糕了", "zh", '["a"]')
    ]
    assert {row["predicted_label"] for row in rows} <= LABELS


@pytest.mark.parametrize(
    "name, content, images, expected",
    [
        ("bad.jsonl", '{"text": "ok"}\n{"text": 5}\nnot json\n[1, 2]\n{"text": ""}\n{"text": "x", "image": "a.png"}\n',
         [], ["line 2: `text` must be a string", "line 3: not valid JSON", "line 4: expected a JSON object",
              "line 5: empty text and no image", "line 6: image 'a.png' was not uploaded"]),
        ("no_text.csv", "tweet,image\nhello,\n", [], ["line 1: the header ['tweet', 'image'] has no `text` column"]),
        ("ragged.csv", "text,image\nfine,\n\"a, b\",x.png,extra\n", [], ["line 3: 3 fields, but the header has 2"]),
        ("tweets.xlsx", "text\nhello\n", [], ["upload a .csv file"]),
        ("latin1.csv", "text\ncaf\xe9\n".encode("latin-1"), [], ["not UTF-8 text"]),
        ("empty.csv", "", [], ["the file is empty"]),
        ("tweets.csv", "text,image\nhello,red.png\n", ["notes.zip"], ["notes.zip is not a valid zip file"]),
        ("bad_image.csv", "text,image\n,truncated.jpg\nfine,\n", ["truncated.jpg"],
         ["line 2: truncated.jpg is not a readable image (not a complete JPEG, PNG, GIF or WebP file), and the text"]),
    ],
)
def test_malformed_batch_file_lists_its_problems_and_the_server_keeps_serving(
    client, files, tmp_path, name, content, images, expected
):
    tweets = tmp_path / name
    tweets.write_bytes(content if isinstance(content, bytes) else content.encode())
    message, preview, predictions = classify_file(client, tweets, [files / image for image in images])
    assert message.startswith(f"⚠️ **{name} can't be classified:**") and predictions is None
    for problem in expected:
        assert problem in message
    assert "Traceback" not in message
    assert_still_serving(client, files)


def test_model_resolution_order(tmp_path):
    trained = tmp_path / "m2sa-demo"
    trained.mkdir()
    assert space_app.resolve_model("org/cli", {"M2SA_MODEL": "org/env"}, trained) == "org/cli"
    assert space_app.resolve_model(None, {"M2SA_MODEL": "org/env"}, trained) == "org/env"
    assert space_app.resolve_model(None, {}, trained) == str(trained)
    linked = space_app.resolve_model(None, {"SPACE_ID": "someone/m2sa"}, tmp_path / "missing")
    assert linked == space_app.SpaceCard.load(REPO_ROOT / "space" / "README.md").data.models[0]


def test_write_space_gives_a_folder_that_serves_the_given_model_as_tested(tmp_path):
    import gradio
    from huggingface_hub import SpaceCard
    from importlib.metadata import version
    from packaging.requirements import Requirement

    import write_space

    out = write_space.write_space("someone/m2sa-xlmr-clip", tmp_path / "space")
    assert sorted(path.name for path in out.iterdir()) == ["README.md", "app.py", "batch_files.py",
                                                          "requirements.txt"]
    card = SpaceCard.load(out / "README.md")
    assert card.data.models == ["someone/m2sa-xlmr-clip"]  # the model served on the Space, and linked by the Hub
    assert card.data.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"  # what the tests ran
    assert card.data.sdk_version == gradio.__version__
    assert card.text == SpaceCard.load(REPO_ROOT / "space" / "README.md").text
    # each requirement admits the version the tests ran with
    for line in (out / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            requirement = Requirement(line.split("#")[0].strip())
            assert requirement.specifier.contains(version(requirement.name)), line
    for not_a_hub_id in ("m2sa-demo", str(tmp_path)):
        with pytest.raises(SystemExit, match="is not a Hub model id"):
            write_space.write_space(not_a_hub_id, tmp_path / "refused")


def test_missing_default_model_exits_with_the_command_to_create_it(tmp_path, monkeypatch):
    monkeypatch.delenv("M2SA_MODEL", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setattr(space_app, "DEFAULT_MODEL_DIR", tmp_path / "outputs" / "m2sa-demo")
    with pytest.raises(SystemExit) as exit_info:
        space_app.main([])
    message = str(exit_info.value.code)
    assert "python train.py" in message and "--model" in message and "M2SA_MODEL" in message


def test_text_only_model_hides_the_image_and_refuses_one(tiny_towers, files):
    model = M2SAForSequenceClassification.from_towers(tiny_towers["bert"])
    classify = M2SASentimentPipeline(model=model, processor=M2SAProcessor.from_towers(tiny_towers["bert"]), device="cpu")
    demo = space_app.build_demo(classify)
    assert not any(getattr(block, "elem_id", None) == "tweet-image" and block.visible for block in demo.blocks.values())
    label, breakdown, message, _ = space_app.classify_tweet(classify, TWEET, None)
    assert set(label) == LABELS and "text alone" in breakdown and "image alone" not in breakdown
    assert "text only" in space_app.classify_tweet(classify, TWEET, str(files / "red.png"))[2]


def test_space_folder_runs_without_the_package(saved_tiny_model_dir, tmp_path):
    """The Space deploys as its folder alone: no module of this repository is imported, the model's own pipeline
    (remote code) does the work, and the image caps are those of the model's code, with no copy in the folder."""
    for path in (REPO_ROOT / "space").glob("*.py"):
        for line in path.read_text().splitlines():
            assert not line.startswith(("from modeling_m2sa", "import modeling_m2sa", "from m2sa_training",
                                        "from dataset_script")), f"{path.name}: {line}"
            assert not re.match(r"MAX_IMAGE_\w+ =", line), f"{path.name}: {line}"
    space_copy = tmp_path / "space"
    shutil.copytree(REPO_ROOT / "space", space_copy)
    Image.new("1", (4097, 4096)).save(tmp_path / "wide.png")
    demo_model = tmp_path / "demo-model"  # a model whose card says it learned the synthetic demo set
    shutil.copytree(saved_tiny_model_dir, demo_model)
    (demo_model / "README.md").write_text(f"---\ntags:\n- m2sa\n- {SYNTHETIC_DEMO_TAG}\n---\n# demo\n")
    child = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "import app\n"
        "classify = app.load_pipeline(sys.argv[1])\n"
        "label, breakdown, message, _ = app.classify_tweet(classify, 'What a lovely day', None)\n"
        "print(type(classify).__module__, sorted(label), breakdown.splitlines()[-1].split('|')[1].strip())\n"
        "print(app.image_rules(classify).__name__)\n"
        "print(app.served_model_notice(classify, sys.argv[1]) == app.SYNTHETIC_DEMO_NOTICE)\n"
        "print(app.classify_tweet(classify, 'What a lovely day', 'wide.png')[2])\n"
    )
    result = run_without_package(child, demo_model, space_copy, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    *_, served, rules, demo_notice, refusal = result.stdout.strip().splitlines()
    assert demo_notice == "True"  # the tag read from the served model's code, as the card writer wrote it
    module, answer = served.split(" ", 1)
    assert module.startswith("transformers_modules.") and module.endswith("pipeline_m2sa")
    assert answer == "['negative', 'neutral', 'positive'] text alone"
    assert rules.startswith("transformers_modules.") and rules.endswith(".images_m2sa")
    assert refusal == ("⚠️ wide.png is too large to decode safely: it is 4,097 × 4,096 = 16,781,312 pixels, over this "
                       "demo's cap of 16,777,216 pixels (4096 × 4096) per image. Resize it, or remove the image to "
                       "classify the text alone.")


def test_page_says_when_the_model_was_trained_on_the_synthetic_demo_set(saved_tiny_model_dir, tmp_path):
    demo_model = tmp_path / "demo-model"
    shutil.copytree(saved_tiny_model_dir, demo_model)
    classify = space_app.load_pipeline(str(demo_model))
    # the tag train.py writes into the model card, read from the served model's code (the Space imports no package)
    assert space_app.served_code(classify, "labels_m2sa").SYNTHETIC_DEMO_TAG == SYNTHETIC_DEMO_TAG
    (demo_model / "README.md").write_text(f"---\ntags:\n- m2sa\n- {SYNTHETIC_DEMO_TAG}\n---\n# demo\n")
    notice = space_app.served_model_notice(classify, str(demo_model))
    assert "not real sentiment" in notice and "--model" in notice and "M2SA_MODEL" in notice
    (demo_model / "README.md").write_text("---\ntags:\n- m2sa\n---\n# a real model\n")
    assert space_app.served_model_notice(classify, str(demo_model)) == ""
    assert space_app.served_model_notice(classify, str(saved_tiny_model_dir)) == ""  # no card at all
    demo = space_app.build_demo(space_app.load_pipeline(str(saved_tiny_model_dir)), notice)
    (shown,) = [block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "model-notice"]
    assert shown.visible and shown.value == notice


def test_page_says_which_backend_serves(saved_tiny_model_dir):
    for backend, expected_start in ((None, "auto on "), ("int8", "int8 (as asked; ")):
        classify = space_app.load_pipeline(str(saved_tiny_model_dir), backend)
        expected, reason = classify.served_backend()
        assert reason.startswith(expected_start)
        demo = space_app.build_demo(classify)
        (shown,) = [block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "served-backend"]
        assert shown.visible and shown.value == f"Served with the **{expected}** backend ({reason}) on cpu."


def test_an_unknown_backend_is_refused_with_the_choices(saved_tiny_model_dir, capsys):
    with pytest.raises(SystemExit):
        space_app.main(["--model", str(saved_tiny_model_dir), "--backend", "onnx"])
    assert "backend must be one of ['auto', 'fp32', 'bf16', 'int8'], got 'onnx'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; install Debian's Chromium (apt-get install -y chromium), as .ci/run does")
    from playwright.sync_api import sync_playwright

    profile = {name: str(tmp_path_factory.mktemp(name.lower())) for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, env={**os.environ, **profile}
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, space):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(space[0].local_url, wait_until="networkidle")
    yield page
    page.close()


def save_screenshot(page, name, tmp_path):
    """The page as the browser shows it, under pytest's temporary directory or `$M2SA_SCREENSHOT_DIR` (the docs'
    screenshots come from `M2SA_SCREENSHOT_DIR=docs/figures python -m pytest tests/test_space.py -k browser`)."""
    directory = Path(os.environ.get("M2SA_SCREENSHOT_DIR", tmp_path))
    page.screenshot(path=directory / name, full_page=True)
    print(f"screenshot: {directory / name}")


def enter_tweet(page, image):
    """Type TWEET and upload `image` on the Tweet tab."""
    page.locator("#tweet-text textarea").fill(TWEET)
    page.locator("#tweet-image input[type=file]").set_input_files(image)


def test_browser_classifies_a_tweet_with_an_image(page, files, tmp_path):
    from playwright.sync_api import expect

    enter_tweet(page, files / "red.png")
    expect(page.locator("#tweet-image img")).to_be_visible()
    page.locator("#classify").click()
    expect(page.locator("#breakdown")).to_contain_text("both", timeout=30_000)
    breakdown = page.locator("#breakdown").inner_text()
    assert [line.split("\t")[0] for line in breakdown.splitlines()] == ["input", "text alone", "image alone", "both"]
    both_label = breakdown.splitlines()[-1].split("\t")[1]
    expect(page.locator("#sentiment")).to_contain_text(both_label)
    assert all(name in page.locator("#sentiment").inner_text() for name in LABELS)
    expect(page.locator("#language")).to_contain_text("Language: en")
    save_screenshot(page, "space_classified.png", tmp_path)


def test_browser_explains_a_tweet_with_an_image(page, files, tmp_path):
    """Explain: the tweet's words highlighted by attribution, the image with its heatmap, and the modality shares."""
    from playwright.sync_api import expect

    enter_tweet(page, files / "red.png")
    expect(page.locator("#tweet-image img")).to_be_visible()
    page.locator("#explain").click()
    expect(page.locator("#explained-shares")).to_contain_text("the text carries", timeout=60_000)
    shares = page.locator("#explained-shares").inner_text()
    assert "the image" in shares and "%" in shares
    for word in TWEET.split():
        expect(page.locator("#explained-words")).to_contain_text(word)
    expect(page.locator("#explained-image img")).to_be_visible()
    page.screenshot(path=tmp_path / "space_explained.png", full_page=True)  # the docs' own comes from the demo model


def test_browser_shows_a_friendly_message_for_a_bad_upload(page, files, tmp_path):
    from playwright.sync_api import expect

    enter_tweet(page, files / "truncated.jpg")
    page.locator("#classify").click()
    expect(page.locator("#message")).to_contain_text("truncated.jpg is not a readable image", timeout=30_000)
    assert "Traceback" not in page.content()
    save_screenshot(page, "space_bad_upload.png", tmp_path)


def test_browser_example_fills_the_inputs(page):
    from playwright.sync_api import expect

    page.get_by_text(space_app.EXAMPLES[0][0]).click()
    expect(page.locator("#tweet-text textarea")).to_have_value(space_app.EXAMPLES[0][0])
    expect(page.locator("#tweet-image img")).to_be_visible()
    page.locator("#classify").click()
    expect(page.locator("#breakdown")).to_contain_text("both", timeout=30_000)


def test_a_card_that_cannot_be_read_is_said_not_taken_for_a_real_model(saved_tiny_model_dir, tmp_path, monkeypatch):
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    model = tmp_path / "model"
    shutil.copytree(saved_tiny_model_dir, model)
    (model / "README.md").write_text("---\ntags:\n- m2sa\n---\n# a model\n")

    def unreachable(*args, **kwargs):
        raise HfHubHTTPError("503 Service Unavailable", response=httpx.Response(503, request=httpx.Request("GET", "https://huggingface.co")))

    monkeypatch.setattr(space_app.ModelCard, "load", unreachable)
    notice = space_app.served_model_notice(space_app.load_pipeline(str(model)), str(model))
    assert "could not be read (HfHubHTTPError)" in notice and "synthetic demo set" in notice

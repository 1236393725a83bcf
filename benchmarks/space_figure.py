"""The README's figure of the Space explaining a tweet: the demo model (`outputs/m2sa-demo`, from `python train.py`)
served by `space/app.py` on loopback, one demo-set test tweet with a planted word and an image typed into the page,
Explain clicked, and the page captured by headless Chromium (playwright, /usr/bin/chromium).

    python benchmarks/space_figure.py [--out docs/figures/space_explained.png]
"""

import argparse
import io
import os
import socket
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "space"))
sys.path.insert(0, str(REPO_ROOT))

import app as space_app  # noqa: E402
import datasets  # noqa: E402
from PIL import Image  # noqa: E402

from dataset_script.demo import LEXICON  # noqa: E402

MODEL = REPO_ROOT / "outputs" / "m2sa-demo"
DEMO_SET = REPO_ROOT / ".cache" / "m2sa" / "demo-dataset"
CHROMIUM = "/usr/bin/chromium"


def example_tweet(directory):
    """The first English demo test tweet with a positive planted word and a green-ish image: (text, image path)."""
    positive = set(LEXICON["en"][0].split())
    rows = datasets.load_dataset(str(DEMO_SET), "en", split="test").cast_column("image", datasets.Image(decode=False))
    def green(row):  # the demo's positive image cue: a green-ish dominant colour
        red, green_, blue = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB").resize((1, 1)).getpixel((0, 0))
        return green_ > max(red, blue) + 20

    row = next(row for row in rows if row["image"] and positive & set(row["text"].split()) and green(row))
    path = directory / "tweet.png"
    Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB").resize((240, 240)).save(path)
    return row["text"], path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "figures" / "space_explained.png")
    args = parser.parse_args()
    if not MODEL.is_dir() or not DEMO_SET.is_dir():
        sys.exit("Run `python train.py` first: it writes the demo model and the demo set this figure uses.")
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory(prefix="m2sa-figure-") as work:
        text, image = example_tweet(Path(work))
        classify = space_app.load_pipeline(str(MODEL))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        demo = space_app.build_demo(classify, space_app.served_model_notice(str(MODEL)))
        space_app.serve(demo, server_port=port, prevent_thread_lock=True)
        profile = {name: os.path.join(work, name) for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, env={**os.environ, **profile},
                                                 args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}", wait_until="networkidle")
            page.locator("#tweet-text textarea").fill(text)
            page.locator("#tweet-image input[type=file]").set_input_files(image)
            page.locator("#classify").click()
            expect(page.locator("#breakdown")).to_contain_text("both", timeout=60_000)
            page.locator("#explain").click()
            expect(page.locator("#explained-shares")).to_contain_text("the text carries", timeout=60_000)
            expect(page.locator("#explained-image img")).to_be_visible()
            page.screenshot(path=args.out, full_page=True)
            browser.close()
        demo.close()
    print(f"{args.out}: {text!r}")


if __name__ == "__main__":
    main()

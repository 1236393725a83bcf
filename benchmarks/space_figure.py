"""The README's figure of the Space explaining a tweet: the demo model (`outputs/m2sa-demo`, from `python train.py`)
served by `space/app.py` on loopback, one demo-set test tweet with a planted word and an image typed into the page,
Explain clicked, and the page captured by headless Chromium (playwright, /usr/bin/chromium).

    python -m benchmarks.space_figure [--out docs/figures/space_explained.png]
"""

import io
import os
import sys
import tempfile
from pathlib import Path

import datasets
from PIL import Image

from benchmarks.figures import FIGURES
from benchmarks.harness import REPO_ROOT, benchmark_parser, free_port, space_app
from benchmarks.models import DEMO_MODEL
from dataset_script.demo import LEXICON

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
    args = benchmark_parser(__doc__, out=FIGURES / "space_explained.png").parse_args()
    if not DEMO_MODEL.is_dir() or not DEMO_SET.is_dir():
        sys.exit("Run `python train.py` first: it writes the demo model and the demo set this figure uses.")
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory(prefix="m2sa-figure-") as work:
        text, image = example_tweet(Path(work))
        space = space_app()
        classify = space.load_pipeline(str(DEMO_MODEL))
        port = free_port()
        demo = space.build_demo(classify, space.served_model_notice(str(DEMO_MODEL)))
        space.serve(demo, server_port=port, prevent_thread_lock=True)
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

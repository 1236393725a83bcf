"""The ecosystem's int8 inference options side by side on the M2SA model, in one run: forward throughput, logit error,
setup time and extra memory against fp32 eager, and argmax agreement with fp32 on a trained model.

Options, each made from the same fp32 model:
- `fp32_eager`: the model as it is (the reference).
- `project_int8`: the project's own CPU fast path, `model_for_backend(model, "int8")`.
- `torchao_int8_eager` / `torchao_int8_compiled`: `torchao.quantization.quantize_` with
  `Int8DynamicActivationInt8WeightConfig()` on a copy of the model, run as it is and under `torch.compile` (inductor).
- `transformers_torchao_int8_dynamic` / `transformers_torchao_int8_weight_only`: the model saved with
  `save_pretrained` and loaded with `from_pretrained(..., quantization_config=TorchAoConfig(...))`.
- `onnxruntime_fp32` / `onnxruntime_int8`: `torch.onnx.export(..., dynamo=True)` (dynamic batch and sequence axes) of
  `ExportableM2SA`, then `onnxruntime.quantization.quantize_dynamic` (int8 weights), run by an `InferenceSession` with
  as many threads as torch uses.

Models (`--model`): `paper` (the default), paper scale, XLM-R base (real 250,002-token vocabulary) + CLIP ViT-B/32,
random weights, concat fusion, on real UMSAB texts, half of them with a real MVSA image (from the data root); or
`umsab-minilm`, the text model `bench_backends` measures (all-MiniLM-L6-v2 fine-tuned by train.py on UMSAB English,
trained on first use), timed and compared on the same real English tweets as there (the 324 UMSAB validation tweets
and the 400 MVSA texts; the first `--num-tweets` timed, all of them for agreement), with `project_bf16` (the bf16
backend) among the options. They are encoded once, sorted by
token count and cut into batches; only the forward pass is timed (`model(**batch).logits` under
`torch.inference_mode`, `session.run` for ONNX Runtime): one warm-up pass over all batches, then `--repeats` passes,
taken in turns (each repeat times every option once) so that the machine's background load weighs on all options
alike; an option's time is the sum over batches of each batch's best time. `torch.compile` compiles during the
warm-up pass (with an empty inductor cache), so its setup seconds include that pass. Extra memory is an RSS delta: the
process's resident memory right after an option was made (before its first forward) minus right before, while the
fp32 model is loaded.

Agreement: the same recipes applied to a trained model (`--agreement-model`, else the one `bench_inference`
measures agreement on, trained on first use) over the 400 MVSA tweets of the data root, each once with its image and
once as text only, compared by argmax with that model in fp32. An option that fails records its error and the run
goes on.

    pip install -e ".[bench_int8]"     # torchao, onnxruntime, onnx, onnxscript
    python -m benchmarks.bench_int8_options [--model paper|umsab-minilm] [--num-tweets 64] [--batch-size 32]
                                            [--repeats 3] [--agreement-model DIR]
"""

import contextlib
import copy
import ctypes
import functools
import gc
import importlib.metadata
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch

try:
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
    MISSING_EXTRA = None
except ImportError as missing:  # said when the benchmark runs, after --help
    MISSING_EXTRA = missing.name

from transformers import AutoModelForSequenceClassification, AutoProcessor, TorchAoConfig
from transformers.utils import logging as transformers_logging

from benchmarks.cpu_info import cpu_description
from benchmarks.harness import REPO_ROOT, benchmark_parser, model_name, require_data, resident_bytes, write_results
from benchmarks.models import UMSAB_ENGLISH_MODEL, mvsa_model_dir, paper_scale_model_and_processor, umsab_english_model_dir
from benchmarks.tweets import english_agreement_tweets, load_tweets, mvsa_tweets
from modeling_m2sa.backends_m2sa import model_for_backend
from modeling_m2sa.export import export

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "has_image")
TEXT_MODEL_INPUTS = ("input_ids", "attention_mask")
MODELS = ("paper", "umsab-minilm")
LIBC = ctypes.CDLL("libc.so.6")
PAPER_SCALE = "paper scale: XLM-R base (250,002-token vocabulary) + CLIP ViT-B/32, random weights, concat fusion"
NOTES = {
    "tweets_per_second": "forward passes only, over the same pre-encoded length-sorted batches: the sum of each batch's "
                         "best time over `repeats` passes after a warm-up pass, the options timed in turns",
    "extra_rss_mb": "RSS delta (/proc/self/statm, after gc and malloc_trim): resident memory right after the option "
                    "was made from the loaded fp32 model (or from its saved / exported files), before its first "
                    "forward, minus right before. Options that load their own copy (transformers, ONNX Runtime) count "
                    "the whole copy; compare with fp32_parameters_mb",
    "setup_seconds": "from the fp32 model in memory to a ready option: quantization, save_pretrained + "
                     "from_pretrained, ONNX export (+ quantize_dynamic) + session; torch.compile's includes the "
                     "warm-up pass, where it compiles with an empty inductor cache (compile_seconds: that pass minus "
                     "a timed one)",
    "onnx_export": "of ExportableM2SA: the model's forward without its Python branch on has_image.any(), which "
                   "torch.export cannot trace; same logits (see max_abs_logit_difference_vs_fp32 of onnxruntime_fp32)",
    "agreement": "each option's recipe applied to the trained model; argmax agreement with that model in fp32 over the "
                 "MVSA tweets with and without their images",
}
"""What the report's fields measure, recorded with them."""


class ExportableM2SA(torch.nn.Module):
    """The classifier's forward (concat fusion) in a form `torch.export` can trace. The model's own forward skips the
    image tower with `if not has_image.any()`, a Python branch on tensor data that export rejects; here the image tower
    always runs, on the rows that have an image (a data-dependent row count, which export does trace; zero rows
    work), and the learned "no image" embedding fills the other rows, as the model does."""

    def __init__(self, model):
        super().__init__()
        if model.config.vision_config is None or model.config.fusion_type != "concat":
            raise ValueError(f"ExportableM2SA covers multimodal models with concat fusion, not "
                             f"fusion_type={model.config.fusion_type!r}")
        self.model = model

    def forward(self, input_ids, attention_mask, pixel_values, has_image):
        m2sa = self.model.m2sa
        text_embeds = m2sa.get_text_features(input_ids, attention_mask)
        present = m2sa.get_image_features(pixel_values[has_image])
        missing = m2sa.missing_image_embedding.expand(text_embeds.shape[0], -1)
        image_embeds = missing.index_copy(0, has_image.nonzero(as_tuple=True)[0], present)
        return self.model.head(torch.cat([text_embeds, image_embeds], dim=-1))


class ExportableTextM2SA(torch.nn.Module):
    """A text-only classifier's forward on token ids and attention mask alone, for `torch.export`."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def exportable(model):
    """The model's forward in a form `torch.export` traces, and the dynamic axes of its inputs."""
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    text_axes = {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}}
    if model.config.vision_config is None:
        return ExportableTextM2SA(model).eval(), text_axes
    return ExportableM2SA(model).eval(), {**text_axes, "pixel_values": {0: batch}, "has_image": {0: batch}}


class Artifacts:
    """Files the options derive from one fp32 model, each made once (in `folder`) and shared by the options that need
    it. Each is (path, seconds it took from the fp32 model in memory)."""

    def __init__(self, model, processor, export_batch, folder):
        self.model, self.processor, self.export_batch, self.folder = model, processor, export_batch, folder
        folder.mkdir()

    @functools.cached_property
    def saved(self):
        start = time.perf_counter()
        path = self.folder / "saved"
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)
        return path, time.perf_counter() - start

    @functools.cached_property
    def onnx_fp32(self):
        start = time.perf_counter()
        path = self.folder / "model.onnx"
        module, dynamic_shapes = exportable(self.model)
        program = torch.onnx.export(module, (), kwargs=self.export_batch, dynamo=True, dynamic_shapes=dynamic_shapes,
                                    output_names=["logits"], verbose=False)
        program.save(path)
        return path, time.perf_counter() - start

    @functools.cached_property
    def onnx_int8(self):
        source, export_seconds = self.onnx_fp32
        start = time.perf_counter()
        path = self.folder / "model_int8.onnx"
        # its shape inference logs every tensor it cannot type (the data-dependent image rows), a dump of hundreds of
        # lines; every linear layer is quantized all the same
        with quiet_root_logger():
            quantize_dynamic(source, path, weight_type=QuantType.QInt8)
        return path, export_seconds + time.perf_counter() - start


@contextlib.contextmanager
def quiet_root_logger():
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def torch_forward(model):
    return lambda batch: model(**batch).logits


def bf16_forward(model):
    """The bf16 backend as the pipeline runs it: bf16 linear weights, the forward under bf16 autocast."""
    derived = model_for_backend(model, "bf16")

    def forward(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return derived(**batch).logits.float()
    return forward


def torchao_quantized(model):
    quantized = copy.deepcopy(model)
    quantize_(quantized, Int8DynamicActivationInt8WeightConfig())
    return quantized


def transformers_torchao(quant_config_name):
    """Loading the saved model with transformers' `TorchAoConfig` of the torchao config class `quant_config_name`."""
    def load(model, saved_dir):
        quant_config = {"Int8DynamicActivationInt8WeightConfig": Int8DynamicActivationInt8WeightConfig,
                        "Int8WeightOnlyConfig": Int8WeightOnlyConfig}[quant_config_name]()
        return torch_forward(AutoModelForSequenceClassification.from_pretrained(
            saved_dir, quantization_config=TorchAoConfig(quant_config), device_map="cpu", trust_remote_code=True
        ).eval())
    return load


def onnxruntime_session(model, onnx_path):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()]
    return lambda batch: torch.from_numpy(session.run(["logits"], {name: batch[name].numpy() for name in names})[0])


class Option(NamedTuple):
    recipe: str
    load: Callable  # (fp32 model, artifact path or None) -> forward(batch) -> logits
    artifact: str | None = None  # the Artifacts file it loads from
    compiled: bool = False  # compiles during its warm-up pass


OPTIONS = {
    "fp32_eager": Option("the fp32 model as it is", lambda model, _: torch_forward(model)),
    "project_int8": Option('model_for_backend(model, "int8")',
                           lambda model, _: torch_forward(model_for_backend(model, "int8"))),
    "project_bf16": Option('model_for_backend(model, "bf16") under bf16 autocast (the bf16 backend)',
                           lambda model, _: bf16_forward(model)),
    "torchao_int8_eager": Option("quantize_(copy, Int8DynamicActivationInt8WeightConfig())",
                                 lambda model, _: torch_forward(torchao_quantized(model))),
    "torchao_int8_compiled": Option("quantize_(copy, Int8DynamicActivationInt8WeightConfig()), torch.compile",
                                    lambda model, _: torch_forward(torch.compile(torchao_quantized(model))),
                                    compiled=True),
    "transformers_torchao_int8_dynamic": Option(
        "from_pretrained(saved, quantization_config=TorchAoConfig(Int8DynamicActivationInt8WeightConfig()))",
        transformers_torchao("Int8DynamicActivationInt8WeightConfig"), artifact="saved"),
    "transformers_torchao_int8_weight_only": Option(
        "from_pretrained(saved, quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))",
        transformers_torchao("Int8WeightOnlyConfig"), artifact="saved"),
    "onnxruntime_fp32": Option("torch.onnx.export(dynamo=True), InferenceSession", onnxruntime_session,
                               artifact="onnx_fp32"),
    "onnxruntime_int8": Option("torch.onnx.export(dynamo=True), quantize_dynamic(weight_type=QInt8) (its defaults: "
                               "one scale per weight tensor, uint8 activations with one scale per tensor), "
                               "InferenceSession", onnxruntime_session, artifact="onnx_int8"),
}


def encoded_batches(processor, texts, images, batch_size, image_size, **processor_kwargs):
    """`texts` (with `images`, a path or None each) encoded once, sorted by token count (longest first) and cut into
    batches. Every batch of a model with an image tower (`image_size`) carries `pixel_values` (zeros for a batch without
    images, rows the model ignores), so each option, ONNX Runtime's fixed inputs included, gets the same tensors; a
    text-only model's (`image_size` None) carry token ids and attention mask only."""
    counts = [len(ids) for ids in processor.tokenize(texts, padding=False, return_tensors=None)["input_ids"]]
    order = sorted(range(len(texts)), key=counts.__getitem__, reverse=True)
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch_images = [images[row] for row in rows]
        inputs = processor(text=[texts[row] for row in rows],
                           images=batch_images if any(image is not None for image in batch_images) else None,
                           **processor_kwargs)
        if image_size is None:  # a text-only model
            batches.append({name: inputs[name] for name in TEXT_MODEL_INPUTS})
            continue
        if "pixel_values" not in inputs:
            inputs["pixel_values"] = torch.zeros(len(rows), 3, image_size, image_size)
        batches.append({name: inputs[name] for name in MODEL_INPUTS})
    return batches


def resident_mb():
    """Resident memory (MB) once garbage is collected and glibc has handed freed heap memory back: otherwise a new
    option would reuse what an earlier one freed and look smaller than it is."""
    gc.collect()
    LIBC.malloc_trim(0)
    return resident_bytes() / 2**20


def made(option, model, artifacts):
    """`option` made from `model`: (forward, setup seconds, RSS delta in MB of making it from its artifact)."""
    path, artifact_seconds = getattr(artifacts, option.artifact) if option.artifact else (None, 0.0)
    rss_before, start = resident_mb(), time.perf_counter()
    forward = option.load(model, path)
    return forward, artifact_seconds + time.perf_counter() - start, resident_mb() - rss_before


def timed_pass(forward, batches):
    """(logits of all batches, seconds per batch) of one pass over `batches`."""
    logits, seconds = [], []
    with torch.inference_mode():
        for batch in batches:
            start = time.perf_counter()
            logits.append(forward(batch))
            seconds.append(time.perf_counter() - start)
    return torch.cat(logits), seconds


def short_error(error):
    """An option's error as one line for the results, without this machine's paths."""
    text = next((line for line in str(error).splitlines() if line.strip()), "")[:300]
    for path, name in ((REPO_ROOT, "<repo>"), (REPO_ROOT.parent, "<repo>/.."), (Path(sys.prefix), "<python>"),
                       (Path(tempfile.gettempdir()), "<tmp>")):
        text = text.replace(str(path), name)
    return f"{type(error).__name__}: {text}"


def release():
    """Free the options' models once the caller dropped them: dynamo's caches hold compiled ones."""
    torch._dynamo.reset()
    gc.collect()


def benchmark(model, processor, batches, num_tweets, repeats, folder):
    """Each option made and run once (its warm-up, where torch.compile compiles), then timed in turns: every repeat
    passes once through each option, so a change in the machine's background load hits all of them alike."""
    artifacts = Artifacts(model, processor, export_batch(batches), folder)
    results, forwards = {}, {}
    for name, option in OPTIONS.items():
        print(f"benchmark: {name}", flush=True)
        try:
            forwards[name], setup_seconds, extra_rss = made(option, model, artifacts)
            first_pass = sum(timed_pass(forwards[name], batches)[1])
        except Exception as error:  # an option that fails is a result, not the end of the run
            forwards.pop(name, None)
            results[name] = {"recipe": option.recipe, "error": short_error(error)}
            continue
        results[name] = {"recipe": option.recipe, "setup_seconds": setup_seconds, "extra_rss_mb": extra_rss}
        if option.compiled:
            results[name]["compile_seconds"] = first_pass
            results[name]["setup_seconds"] += first_pass
    best, logits = {name: [math.inf] * len(batches) for name in forwards}, {}
    for _ in range(repeats):
        for name in forwards:
            logits[name], seconds = timed_pass(forwards[name], batches)
            best[name] = [min(pair) for pair in zip(best[name], seconds)]
    forwards.clear()
    release()
    best = {name: sum(seconds) for name, seconds in best.items()}
    for name, seconds in best.items():
        results[name].update({
            "tweets_per_second": num_tweets / seconds,
            "speedup_vs_fp32_eager": best["fp32_eager"] / seconds,
            "max_abs_logit_difference_vs_fp32": float((logits[name] - logits["fp32_eager"]).abs().max()),
        })
        if "compile_seconds" in results[name]:
            results[name]["compile_seconds"] -= seconds  # the warm-up pass less a compiled pass
    return results


def export_batch(batches):
    """The batch the ONNX export traces: one with an image where the model reads images."""
    return next((batch for batch in batches if "has_image" not in batch or batch["has_image"].any()), batches[0])


def image_size(model):
    return None if model.config.vision_config is None else model.config.vision_config.image_size


def agreement(model_dir, option_names, batch_size, folder, data_root, texts=None):
    """Argmax agreement and largest logit difference of each option against fp32 on a trained model, over the MVSA
    tweets each once with its image and once as text only (or over `texts`, for a text model)."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
    if texts is None:
        mvsa_texts, image_paths = mvsa_tweets(data_root)
        texts = mvsa_texts * 2
        images = image_paths + [None] * len(image_paths)
    else:
        images = [None] * len(texts)
    batches = encoded_batches(processor, texts, images, batch_size, image_size(model), on_invalid_image="text_only")
    artifacts = Artifacts(model, processor, export_batch(batches), folder)
    report = {"model": model_name(model_dir), "num_predictions": len(texts), "options": {}}
    with torch.inference_mode():
        reference = torch.cat([model(**batch).logits for batch in batches])
    for name in option_names:
        print(f"agreement: {name}", flush=True)
        try:
            logits = timed_pass(made(OPTIONS[name], model, artifacts)[0], batches)[0]
        except Exception as error:
            report["options"][name] = {"error": short_error(error)}
            continue
        finally:
            release()
        report["options"][name] = {
            "argmax_agreement_vs_fp32": int((logits.argmax(-1) == reference.argmax(-1)).sum()) / len(reference),
            "max_abs_logit_difference_vs_fp32": float((logits - reference).abs().max()),
        }
    return report


def versions():
    return {package: importlib.metadata.version(package)
            for package in ("torch", "torchao", "transformers", "onnxruntime", "onnx", "onnxscript")}


def main():
    args = arguments()
    if MISSING_EXTRA:
        sys.exit(f"This benchmark needs {MISSING_EXTRA}: pip install -e \".[bench_int8]\" (torchao, onnxruntime, onnx, "
                 f"onnxscript).")
    require_data(args.data_root, "umsab", "mvsa_sample")
    transformers_logging.disable_progress_bar()
    run_start = time.perf_counter()
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as work:
        if args.model == "paper":
            texts, images = load_tweets(args.data_root, args.num_tweets)
            model, processor = paper_scale_model_and_processor(texts * 4)
            agreement_texts, model_description = None, PAPER_SCALE
            agreement_dir = mvsa_model_dir(args.agreement_model, args.data_root)
        else:  # saved again by this package, so its code and agreement record are this version's
            agreement_dir = export(umsab_english_model_dir(None, args.data_root), Path(work) / "umsab-minilm")
            model = AutoModelForSequenceClassification.from_pretrained(agreement_dir, trust_remote_code=True).eval()
            processor = AutoProcessor.from_pretrained(agreement_dir, trust_remote_code=True)
            agreement_texts = english_agreement_tweets(args.data_root)
            texts, images = agreement_texts[: args.num_tweets], [None] * args.num_tweets
            model_description = f"{model_name(UMSAB_ENGLISH_MODEL)}: all-MiniLM-L6-v2 fine-tuned on UMSAB English"
        batches = encoded_batches(processor, texts, images, args.batch_size, image_size(model))
        # an empty inductor cache: torch.compile's setup is what a first run costs, not a replay of an earlier run's
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(work) / "inductor")
        results = benchmark(model, processor, batches, args.num_tweets, args.repeats, Path(work) / "paper_scale")
        fp32_mb = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters()) / 2**20
        del model
        gc.collect()
        worked = [name for name, result in results.items() if "error" not in result]
        agreed = agreement(agreement_dir, worked, args.batch_size, Path(work) / "trained", args.data_root,
                           agreement_texts)

    report = {
        "cpu": cpu_description(),
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "model": model_description,
        "fp32_parameters_mb": fp32_mb,
        "num_tweets": args.num_tweets,
        "tweets_with_image": sum(image is not None for image in images),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "options": results,
        "agreement": agreed,
        "notes": NOTES,
        "run_seconds": time.perf_counter() - run_start,
    }
    write_results(args.out, report)
    print_report(report, args.out)


def arguments():
    parser = benchmark_parser(__doc__, out="int8_options.json", data_root=True)
    parser.add_argument("--model", choices=MODELS, default="paper",
                        help="paper: paper-scale towers with random weights, agreement on --agreement-model; "
                             "umsab-minilm: the trained MiniLM text model, timed and compared on real tweets")
    parser.add_argument("--num-tweets", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed passes over all batches; each batch's best time counts")
    parser.add_argument("--agreement-model", type=Path, default=None,
                        help="trained model for agreement (default: bench_inference's agreement model)")
    return parser.parse_args()


def print_report(report, out):
    agreed = report["agreement"]
    print(f"\nCPU: {report['cpu']['model']} ({' '.join(report['cpu']['flags'])}), {report['threads']} threads; "
          f"{report['num_tweets']} tweets ({report['tweets_with_image']} with an image), batches of "
          f"{report['batch_size']}; agreement on {agreed['model']} ({agreed['num_predictions']} predictions)\n")
    print("| option | tweets/s | vs fp32 eager | max abs logit diff | setup (s) | extra RSS (MB) | "
          "argmax agreement |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, result in report["options"].items():
        if "error" in result:
            print(f"| {name} | failed: {result['error']} | | | | | |")
            continue
        agreed_option = agreed["options"][name]
        agreement_text = (f"{agreed_option['argmax_agreement_vs_fp32']:.1%}" if "error" not in agreed_option
                          else f"failed: {agreed_option['error']}")
        print(f"| {name} | {result['tweets_per_second']:.1f} | {result['speedup_vs_fp32_eager']:.2f}x | "
              f"{result['max_abs_logit_difference_vs_fp32']:.4f} | {result['setup_seconds']:.1f} | "
              f"{result['extra_rss_mb']:.0f} | {agreement_text} |")
    print(f"\nfp32 parameters: {report['fp32_parameters_mb']:.0f} MB; total run {report['run_seconds']:.0f} s; "
          f"written to {out}")


if __name__ == "__main__":
    main()

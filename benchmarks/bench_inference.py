"""Inference speed at paper scale with random weights: the paper's demo path against `predict` and the pipeline, in
fp32, bf16 autocast and int8 (the CPU fast path), in one run; how close each path gets to the machine's matmul peak;
and how often the fast paths agree with fp32 on a trained model.

Towers: XLM-R base (real 250,002-token vocabulary) + CLIP ViT-B/32, random weights (no downloads). Tweets: real
UMSAB texts in 8 languages, half of them with a real MVSA image (from ../shared/data). The paper's demo path
classifies one tweet at a time with the text padded to 512 tokens; the model's own pipeline (saved with it, loaded
with `pipeline(model=DIR, trust_remote_code=True)`) and `predict` (the same pipeline as a function) sort by length,
pad each batch to its longest tweet and run under `torch.inference_mode`. `pipeline_int8` loads the output of
`python -m modeling_m2sa.export --backend int8`.

Peak: the same linear-layer shapes the model ran (recorded during the fp32 run) timed alone as fp32, bf16 and int8
(dynamic) matmuls; FLOPs per tweet are counted with `torch.utils.flop_counter` over the fp32 run (matmuls, attention
included). `fraction_of_peak` = samples/s x FLOPs per tweet / peak of the path's arithmetic. Agreement with fp32 is
measured on a trained model (random weights give near-uniform probabilities whose argmax means nothing):
`--agreement-model` (e.g. the pretrained-tower MVSA model of the experiments), else `outputs/m2sa-demo`.

    python benchmarks/bench_inference.py [--num-tweets 96] [--batch-size 32] [--agreement-model DIR]
"""

import argparse
import contextlib
import json
import platform
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from m2sa_training.tiny_towers import train_xlmr_tokenizer  # noqa: E402
from modeling_m2sa import M2SAConfig, M2SAForSequenceClassification, M2SAProcessor, load_image, predict  # noqa: E402
from modeling_m2sa import processing_m2sa  # noqa: E402
from modeling_m2sa.export import export  # noqa: E402
from modeling_m2sa.pipeline_m2sa import cpu_has_native_bf16, model_for_backend, quantize_int8  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoProcessor,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    XLMRobertaConfig,
    pipeline,
)

DATA = REPO_ROOT.parent / "shared" / "data"
AGREEMENT_MODELS = (REPO_ROOT / "outputs" / "m2sa-demo",)
STAGES = ("tokenization", "image decoding", "image preprocessing", "model forward")


def load_tweets(num_tweets, seed=0, image_every=2):
    """Real UMSAB texts round-robin over languages; every `image_every`-th tweet (from the first) gets a real MVSA
    image."""
    languages = sorted(path.name for path in (DATA / "umsab").iterdir())
    per_language = {lang: (DATA / "umsab" / lang / "val_text.txt").read_text(encoding="utf-8").splitlines()
                    for lang in languages}
    image_paths = sorted((DATA / "mvsa_sample" / "data").glob("*.jpg"))
    rng = random.Random(seed)
    texts, images = [], []
    for index in range(num_tweets):
        texts.append(rng.choice(per_language[languages[index % len(languages)]]))
        images.append(image_paths[index % len(image_paths)] if index % image_every == 0 else None)
    return texts, images


def paper_scale_model_and_processor(tokenizer_texts):
    text_config = XLMRobertaConfig(vocab_size=250_002, max_position_embeddings=514, type_vocab_size=1)
    vision_config = CLIPVisionConfig(image_size=224, patch_size=32)  # ViT-B/32 sizes
    model = M2SAForSequenceClassification(M2SAConfig(text_config=text_config, vision_config=vision_config)).eval()
    tokenizer = train_xlmr_tokenizer(tokenizer_texts, vocab_size=8000)
    tokenizer.model_max_length = 512
    processor = M2SAProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=tokenizer, max_length=512)
    return model, processor


def paper_demo_path(model, processor, texts, images):
    """One tweet at a time, text padded to 512 tokens, fp32, as in the paper's demo code."""
    predictions = []
    with torch.no_grad():
        for text, image in zip(texts, images):
            encoded = processor.tokenizer([text], padding="max_length", truncation=True, max_length=512,
                                          return_tensors="pt")
            inputs = dict(encoded)
            if image is not None:
                pixel_values = processor.image_processor(images=[load_image(image)], return_tensors="pt")
                inputs["pixel_values"] = pixel_values["pixel_values"]
                inputs["has_image"] = torch.tensor([True])
            predictions.append(int(model(**inputs).logits.argmax(-1)))
    return predictions


def whole_batch_path(model, processor, texts, images, batch_size):
    """Sorted by token count like the pipeline, but each batch encoded by one processor call (how the pipeline ran
    before its `preprocess` took one tweet at a time): the reference for the cost of per-tweet preprocessing."""
    counts = [len(ids) for ids in processor.tokenize(texts, padding=False, return_tensors=None)["input_ids"]]
    order = sorted(range(len(texts)), key=counts.__getitem__, reverse=True)
    predictions = [None] * len(texts)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch_images = [images[row] for row in rows]
            inputs = processor(text=[texts[row] for row in rows],
                               images=batch_images if any(image is not None for image in batch_images) else None)
            for row, label in zip(rows, model(**inputs).logits.argmax(-1).tolist()):
                predictions[row] = label
    return predictions


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


@contextlib.contextmanager
def stage_timer(processor, models):
    """Seconds spent per stage while inside: the processor's tokenizer, image decoding, image preprocessing and the
    forward passes of `models` (wrapped on the instances, so the code under test is unchanged)."""
    seconds = defaultdict(float)

    def timing(stage, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - start
        return wrapper

    decode_images = processing_m2sa.decode_images
    # every tokenizer call (the pipeline's per-tweet encoding and its length sort) goes through `_encode_plus`
    processor.tokenizer._encode_plus = timing("tokenization", processor.tokenizer._encode_plus)
    processor.image_processor.preprocess = timing("image preprocessing", processor.image_processor.preprocess)
    processing_m2sa.decode_images = timing("image decoding", decode_images)
    for model in models:
        model.forward = timing("model forward", model.forward)
    try:
        yield seconds
    finally:
        processing_m2sa.decode_images = decode_images
        for instance in (processor.tokenizer, processor.image_processor, *models):
            for name in ("_encode_plus", "preprocess", "forward"):
                instance.__dict__.pop(name, None)


def linear_shapes(model, function):
    """Counter of (rows, in_features, out_features) over every nn.Linear call `function()` makes on `model`."""
    shapes = Counter()

    def record(module, inputs):
        shapes[(inputs[0].numel() // module.in_features, module.in_features, module.out_features)] += 1

    hooks = [module.register_forward_pre_hook(record) for module in model.modules()
             if isinstance(module, torch.nn.Linear)]
    try:
        function()
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def seconds_per_call(function, min_seconds=0.05):
    function()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or calls < 3:
        function()
        calls += 1
    return elapsed / calls


def gemm_peak_gflops(shapes):
    """GFLOP/s of the model's own linear layers run alone (FLOP-weighted over `shapes`) as fp32, bf16 and dynamic
    int8 matmuls, and of a 2048^3 fp32 matmul for reference."""
    totals = defaultdict(float)
    flops = 0
    with torch.inference_mode():
        for (rows, in_features, out_features), count in shapes.items():
            layer = torch.nn.Sequential(torch.nn.Linear(in_features, out_features)).eval()
            int8_layer = quantize_int8(layer)
            activations = torch.randn(rows, in_features)
            bf16_layer, bf16_activations = layer.to(torch.bfloat16), activations.to(torch.bfloat16)
            totals["int8"] += count * seconds_per_call(lambda: int8_layer(activations))
            totals["bf16"] += count * seconds_per_call(lambda: bf16_layer(bf16_activations))
            layer.float()
            totals["fp32"] += count * seconds_per_call(lambda: layer(activations))
            flops += count * 2 * rows * in_features * out_features
        square = torch.randn(2048, 2048)
        square_gflops = 2 * 2048**3 / seconds_per_call(lambda: square @ square, 0.3) / 1e9
    return {**{name: flops / total / 1e9 for name, total in totals.items()}, "fp32_square_2048": square_gflops}


def counted_flops(model, function):
    """FLOPs of `function()` (matmuls, attention and convolutions) on `model`. Gradients are switched off meanwhile:
    the counter's module tracker cannot follow parameters a module returns as they are under inference mode."""
    requires_grad = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    model.requires_grad_(False)
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            function()
    finally:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(requires_grad[name])
    return counter.get_total_flops()


def read_mvsa_text(path):
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.decode("gbk", errors="replace").strip()


def agreement_model_dir(given):
    for candidate in ([given] if given else AGREEMENT_MODELS):
        if (Path(candidate) / "config.json").is_file():
            return Path(candidate)
    sys.exit(f"No trained model to measure agreement on: pass --agreement-model DIR, or train one with "
             f"`python train.py` (writes {AGREEMENT_MODELS[-1]}).")


def agreement_on_trained_model(model_dir, batch_size, native_bf16):
    """Argmax agreement and largest probability difference of int8 (and bf16) against fp32 `predict` on real MVSA
    tweets, each once with its image and once as text only."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
    image_paths = sorted((DATA / "mvsa_sample" / "data").glob("*.jpg"))
    texts = [read_mvsa_text(path.with_suffix(".txt")) or "." for path in image_paths]
    images = image_paths + [None] * len(image_paths) if model.config.vision_config is not None else None
    texts = texts * 2 if images is not None else texts
    fp32 = predict(model, processor, texts, images, batch_size=batch_size, on_invalid_image="text_only")
    others = {"predict_int8": {"backend": "int8"}, "pipeline_int8": {"backend": "int8"}}
    if native_bf16:
        others["predict_bf16"] = {"autocast_dtype": "bf16"}
    # a model inside the repository is named relative to it: results carry no path of the machine they ran on
    inside = Path(model_dir).resolve().is_relative_to(REPO_ROOT)
    report = {"model": str(Path(model_dir).resolve().relative_to(REPO_ROOT) if inside else Path(model_dir).name),
              "num_tweets": len(texts)}
    for name, options in others.items():
        results = predict(model, processor, texts, images, batch_size=batch_size, on_invalid_image="text_only",
                          **options)
        report[name] = {
            "argmax_agreement_vs_fp32": sum(a["label"] == b["label"] for a, b in zip(results, fp32)) / len(fp32),
            "max_probability_difference": max(abs(a["probabilities"][k] - b["probabilities"][k])
                                              for a, b in zip(results, fp32) for k in a["probabilities"]),
        }
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-tweets", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bf16-num-tweets", type=int, default=None,
                        help="tweets for the bf16 run (default: all; 16 on CPUs without native bf16, where it crawls)")
    parser.add_argument("--agreement-model", type=Path, default=None,
                        help=f"trained model for agreement (default: first of {[str(p) for p in AGREEMENT_MODELS]})")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "inference.json")
    args = parser.parse_args()
    if not (DATA / "umsab").is_dir():
        sys.exit(f"This benchmark reads real tweets from {DATA}; that folder is missing.")
    agreement_dir = agreement_model_dir(args.agreement_model)
    torch.manual_seed(0)
    native_bf16 = cpu_has_native_bf16()
    bf16_count = args.bf16_num_tweets or (args.num_tweets if native_bf16 else min(16, args.num_tweets))

    texts, images = load_tweets(args.num_tweets)
    model, processor = paper_scale_model_and_processor(texts * 4)
    predict(model, processor, texts[:4], images[:4])  # warm-ups; the int8 one also makes the int8 copy
    predict(model, processor, texts[:4], images[:4], backend="int8")
    int8_model = model_for_backend(model, "int8")

    seconds, labels, stage_seconds = {}, {}, {}
    paper, seconds["paper_demo_fp32"] = timed(paper_demo_path, model, processor, texts, images)
    whole_batch, seconds["whole_batch_encode_fp32"] = timed(whole_batch_path, model, processor, texts, images,
                                                            args.batch_size)
    tweets = [{"text": text, "image": image} for text, image in zip(texts, images)]
    with tempfile.TemporaryDirectory() as saved, tempfile.TemporaryDirectory() as exported:
        model.save_pretrained(saved)
        processor.save_pretrained(saved)
        export(saved, exported, backend="int8")
        for name, directory in (("pipeline_fp32", saved), ("pipeline_int8", exported)):
            classify = pipeline(model=directory, trust_remote_code=True, device="cpu")
            classify(tweets[:4])  # warm-up
            labels[name], seconds[name] = timed(classify, tweets, batch_size=args.batch_size)
            del classify
    for name, count, options, models in (("predict_fp32", args.num_tweets, {}, [model]),
                                         ("predict_int8", args.num_tweets, {"backend": "int8"}, [int8_model]),
                                         ("predict_bf16", bf16_count, {"autocast_dtype": "bf16"}, [model])):
        with stage_timer(processor, models) as stages:
            labels[name], seconds[name] = timed(predict, model, processor, texts[:count], images[:count],
                                                batch_size=args.batch_size, **options)
        stage_seconds[name] = {**dict(stages), "other": seconds[name] - sum(stages.values())}
    label_ids = {name: [model.config.label2id[result["label"]] for result in results]
                 for name, results in labels.items()}
    label_ids["paper_demo_fp32"] = paper
    label_ids["whole_batch_encode_fp32"] = whole_batch
    counts = {name: bf16_count if name == "predict_bf16" else args.num_tweets for name in seconds}

    # Part 2: FLOPs per tweet (batched paths run what fp32 predict runs; the paper path pads to 512) and the peak.
    shapes = linear_shapes(model, lambda: predict(model, processor, texts, images, batch_size=args.batch_size))
    batched_flops = counted_flops(model, lambda: predict(model, processor, texts, images,
                                                         batch_size=args.batch_size)) / args.num_tweets
    paper_flops = counted_flops(model, lambda: paper_demo_path(model, processor, texts[:2], images[:2])) / 2
    peaks = gemm_peak_gflops(shapes)
    agreement = agreement_on_trained_model(agreement_dir, args.batch_size, native_bf16)

    paths = {}
    for name, elapsed in seconds.items():
        rate = counts[name] / elapsed
        arithmetic = name.rsplit("_", 1)[-1]
        flops_per_tweet = paper_flops if name == "paper_demo_fp32" else batched_flops
        fp32_ids = label_ids["predict_fp32"][: counts[name]]
        paths[name] = {
            "samples_per_second": rate,
            "speedup_vs_paper": rate * seconds["paper_demo_fp32"] / counts["paper_demo_fp32"],
            "argmax_agreement_vs_fp32": agreement[name]["argmax_agreement_vs_fp32"] if name in agreement else
            sum(a == b for a, b in zip(label_ids[name], fp32_ids)) / counts[name],
            "gflops_per_tweet": flops_per_tweet / 1e9,
            "achieved_gflops": rate * flops_per_tweet / 1e9,
            "fraction_of_peak": rate * flops_per_tweet / 1e9 / peaks[arithmetic],
            "peak_used": arithmetic,
        }
        if name in agreement:
            paths[name]["max_probability_difference_vs_fp32"] = agreement[name]["max_probability_difference"]
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                   f"torch {torch.__version__}, native bf16: {native_bf16}, quantized engine: "
                   f"{torch.backends.quantized.engine}",
        "num_tweets": args.num_tweets,
        "bf16_num_tweets": bf16_count,
        "batch_size": args.batch_size,
        "paths": paths,
        "speedup_int8_vs_fp32_predict": paths["predict_int8"]["samples_per_second"]
        / paths["predict_fp32"]["samples_per_second"],
        "predict_fp32_vs_whole_batch_encode": paths["predict_fp32"]["samples_per_second"]
        / paths["whole_batch_encode_fp32"]["samples_per_second"],
        "gemm_peak_gflops": peaks,
        "stage_seconds": stage_seconds,
        "agreement": {**agreement, "note": "argmax_agreement_vs_fp32 of int8 and bf16 paths is measured on this "
                      "trained model; that of fp32 paths on the benchmark's random-weight model"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"Machine: {report['machine']}; {args.num_tweets} tweets (bf16: {bf16_count}), batch {args.batch_size}\n")
    print("| path | samples/s | vs paper demo path | vs fp32 predict | argmax agreement vs fp32 | GFLOP/s | "
          "fraction of peak |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    fp32_rate = paths["predict_fp32"]["samples_per_second"]
    for name, path in paths.items():
        print(f"| {name} | {path['samples_per_second']:.2f} | {path['speedup_vs_paper']:.1f}x | "
              f"{path['samples_per_second'] / fp32_rate:.2f}x | {path['argmax_agreement_vs_fp32']:.1%} | "
              f"{path['achieved_gflops']:.0f} | {path['fraction_of_peak']:.0%} of {path['peak_used']} |")
    print(f"\nMatmul peak on the model's linear shapes: fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f}, int8 "
          f"{peaks['int8']:.0f} GFLOP/s (2048^3 fp32 matmul: {peaks['fp32_square_2048']:.0f}); "
          f"{batched_flops / 1e9:.2f} GFLOP per tweet batched, {paper_flops / 1e9:.2f} on the paper path.")
    print(f"Agreement model: {agreement['model']} ({agreement['num_tweets']} MVSA tweets, with and without image): "
          + ", ".join(f"{name} {entry['argmax_agreement_vs_fp32']:.1%} argmax agreement, max |Δp| "
                      f"{entry['max_probability_difference']:.3f}"
                      for name, entry in agreement.items() if isinstance(entry, dict)))
    print("\n| path | " + " | ".join(STAGES) + " | other | total (s) |")
    print("|---|" + "---:|" * (len(STAGES) + 2))
    for name, stages in stage_seconds.items():
        total = seconds[name]
        print(f"| {name} | " + " | ".join(f"{stages.get(stage, 0.0):.2f} ({stages.get(stage, 0.0) / total:.0%})"
                                          for stage in (*STAGES, "other")) + f" | {total:.2f} |")


if __name__ == "__main__":
    main()

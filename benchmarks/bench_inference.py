"""Inference speed at paper scale with random weights: the paper's demo path against `predict` and the pipeline on
every backend (fp32, bf16, int8, and auto, the default, which picks one of them for this CPU), in one run; how close
each path gets to its own arithmetic's matmul peak; how often the fast paths agree with fp32 on a trained model; and
the memory a fast backend's derived model adds.

Towers: XLM-R base (real 250,002-token vocabulary) + CLIP ViT-B/32, random weights (no downloads). Tweets: real
UMSAB texts in 8 languages, half of them with a real MVSA image (from the data root). The paper's demo path
classifies one tweet at a time with the text padded to 512 tokens; the model's own pipeline (saved with it, loaded
with `pipeline(model=DIR, trust_remote_code=True)`) and `predict` (the same pipeline as a function) sort by length,
pad each batch to its longest tweet and run under `torch.inference_mode`. `bf16_autocast` is the fp32 model under bf16
autocast (weights re-cast on every call), the path `backend="bf16"` replaced.

Peak: the same linear-layer shapes the model ran (recorded during the fp32 run) timed alone through each backend's own
layer (nn.Linear in fp32, `BFloat16Linear` on bf16 activations, the int8 layer of this CPU's int8 kernel); FLOPs per tweet are counted with
`torch.utils.flop_counter` over the fp32 run (matmuls, attention included). `fraction_of_peak` = samples/s x FLOPs per
tweet / peak of the path's arithmetic. Memory: resident-set growth (polled every millisecond) while the bf16 and int8
derived models are made, against the int8 size of the model's linear weights.

Agreement with fp32 is measured on a trained model (random weights give near-uniform probabilities whose argmax means
nothing): `--agreement-model DIR`, else `outputs/m2sa-mvsa-minilm`, which this benchmark trains on first use (the
pretrained-MiniLM MVSA recipe of `bench_fusion`, seed 1, about 3 minutes), over real tweets: the 400 MVSA tweets
once with their image and once without, and the 323 English UMSAB validation tweets.

The whole run can emulate a lesser CPU on a better machine (`--as-cpu avx2|default`, see `cpu_info.CPU_CAPS`; the
results record it under `cpu.emulated_as`); `bench_backends` compares the backends per CPU kind on a real model.

    python -m benchmarks.bench_inference [--num-tweets 96] [--batch-size 32] [--rounds 5] [--agreement-model DIR]
                                         [--as-cpu avx2|default]
"""

import argparse
import contextlib
import functools
import gc
import importlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForSequenceClassification, AutoProcessor, pipeline

from benchmarks.cpu_info import CPU_CAPS, EMULATED_AS, cpu_description, rerun_as_cpu
from benchmarks.figures import draw
from benchmarks.harness import (
    REPO_ROOT,
    benchmark_parser,
    in_turns,
    model_name,
    require_data,
    resident_bytes,
    run_again,
    timed,
    write_results,
)
from benchmarks.models import MVSA_MODEL, mvsa_model_dir, paper_scale_model_and_processor
from benchmarks.tweets import load_tweets, mvsa_tweets, umsab_english_validation
from modeling_m2sa import load_image, predict
from modeling_m2sa import processing_m2sa
from modeling_m2sa.backends_m2sa import (
    auto_backend,
    cpu_has_native_bf16,
    derived_model,
    kernel_for_backend,
    model_for_backend,
)

STAGES = ("tokenization", "image decoding", "image preprocessing", "model forward")
BACKEND_PATHS = {"fp32": {"backend": "fp32"}, "bf16": {"backend": "bf16"}, "int8": {"backend": "int8"},
                 "auto": {}, "bf16_autocast": {"backend": "fp32", "autocast_dtype": "bf16"}}
"""`predict_<name>` runs `predict(..., **options)`; "auto" is the default (no backend given)."""


def main():
    args = arguments()
    if args.as_cpu is not None and os.environ.get(EMULATED_AS) is None:
        sys.exit(rerun_as_cpu(args.as_cpu))
    require_data(args.data_root, "umsab", "mvsa_sample")
    if args.memory_only is not None:
        model = paper_scale_model_and_processor(load_tweets(args.data_root, 8)[0] * 50)[0]
        args.memory_only.write_text(json.dumps(derived_model_memory(model)))
        return
    agreement_dir = mvsa_model_dir(args.agreement_model, args.data_root)
    torch.manual_seed(0)
    native_bf16 = cpu_has_native_bf16()
    bf16_count = args.bf16_num_tweets or (args.num_tweets if native_bf16 else min(16, args.num_tweets))

    texts, images = load_tweets(args.data_root, args.num_tweets)
    model, processor = paper_scale_model_and_processor(texts * 4)
    auto, auto_reason = auto_backend("cpu", model)
    memory = memory_in_own_process(args.data_root)
    timings = time_paths(model, processor, texts, images, auto, bf16_count, args)
    # FLOPs per tweet (batched paths run what fp32 predict runs; the paper path pads to 512) and the matmul peak
    fp32_predict = functools.partial(predict, model, processor, texts, images, batch_size=args.batch_size,
                                     backend="fp32")
    shapes = linear_shapes(model, fp32_predict)
    flops = {"batched": counted_flops(model, fp32_predict) / args.num_tweets,
             "paper": counted_flops(model, lambda: paper_demo_path(model, processor, texts[:2], images[:2])) / 2}
    peaks = gemm_peak_gflops(shapes)
    agreement = agreement_on_trained_model(agreement_dir, args.batch_size, native_bf16, args.data_root)
    paths = paths_report(timings, auto, flops, peaks, agreement)

    report = {
        "cpu": cpu_description(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "auto_backend": {"backend": auto, "reason": auto_reason},
        "num_tweets": args.num_tweets,
        "bf16_num_tweets": bf16_count,
        "rounds": args.rounds,
        "timing": "batched paths timed in turns, --rounds times each; samples_per_second is the best round's (the "
                  "per-round rates show the machine's noise); the paper demo path once",
        "batch_size": args.batch_size,
        "paths": paths,
        "speedup_auto_vs_fp32_predict": paths["predict_auto"]["speedup_vs_fp32_predict"],
        "predict_fp32_vs_whole_batch_encode": paths["predict_fp32"]["samples_per_second"]
        / paths["whole_batch_encode_fp32"]["samples_per_second"],
        "gemm_peak_gflops": peaks,
        "derived_model_memory": memory,
        "stage_seconds": {name: timing["stage_seconds"] for name, timing in timings.items()
                          if "stage_seconds" in timing},
        "agreement": {**agreement, "note": "argmax_agreement_vs_fp32 of the fast paths is measured on this trained "
                      "model over real tweets; that of fp32 paths on the benchmark's random-weight model"},
    }
    write_results(args.out, report)
    draw(args.out)
    print_report(report, {name: timing["seconds"] for name, timing in timings.items()})


def arguments():
    parser = benchmark_parser(__doc__, out="inference.json", data_root=True)
    parser.add_argument("--num-tweets", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5,
                        help="each batched path is timed this many times, in turns with the others; its best counts")
    parser.add_argument("--bf16-num-tweets", type=int, default=None,
                        help="tweets for the bf16 runs (default: all; 16 on CPUs without native bf16, where they crawl)")
    parser.add_argument("--agreement-model", type=Path, default=None,
                        help=f"trained model for agreement (default: {MVSA_MODEL.relative_to(REPO_ROOT)}, "
                             f"trained on first use)")
    parser.add_argument("--as-cpu", choices=sorted(CPU_CAPS), default=None,
                        help="run as a lesser CPU kind: PyTorch's, oneDNN's and MKL's kernels capped to its ISA")
    parser.add_argument("--memory-only", type=Path, help=argparse.SUPPRESS)  # the child of `memory_in_own_process`
    return parser.parse_args()


def time_paths(model, processor, texts, images, auto, bf16_count, args):
    """Every path over the tweets: the paper's demo path once (it takes a minute), the batched paths in turns,
    `--rounds` times. {path: {"tweets", "seconds" (the best round's), "seconds_per_round", "label_ids" and, for a
    batched path, the "stage_seconds" of its best round}}."""
    for options in BACKEND_PATHS.values():  # warm-ups (the derived models exist already)
        predict(model, processor, texts[:4], images[:4], **options)
    paper, paper_seconds = timed(paper_demo_path, model, processor, texts, images)
    timings = {"paper_demo_fp32": {"tweets": len(texts), "seconds": paper_seconds, "seconds_per_round": [],
                                   "label_ids": paper}}
    with tempfile.TemporaryDirectory() as saved:
        model.save_pretrained(saved)
        processor.save_pretrained(saved)
        runs = batched_runs(model, processor, saved, texts, images, auto, bf16_count, args)
        seconds, fastest = in_turns({name: staged(*run) for name, (_, *run) in runs.items()}, args.rounds)
    for name, (count, *_) in runs.items():
        results, stages = fastest[name]
        best = min(seconds[name])
        timings[name] = {
            "tweets": count, "seconds": best, "seconds_per_round": seconds[name],
            "label_ids": [model.config.label2id[result["label"]] for result in results]
            if name.startswith(("pipeline", "predict")) else results,
            "stage_seconds": {**stages, "other": best - sum(stages.values())},
        }
    return timings


def batched_runs(model, processor, saved, texts, images, auto, bf16_count, args):
    """{name: (tweets, run, processor and models whose stages are timed)} of the batched paths: whole-batch encoding,
    the pipeline loaded from the model saved in `saved` (fp32 and auto), and `predict` on every backend."""
    tweets = [{"text": text, "image": image} for text, image in zip(texts, images)]
    runs = {"whole_batch_encode_fp32": (args.num_tweets, lambda: whole_batch_path(
        model, processor, texts, images, args.batch_size), processor, [model])}
    for name, options in (("pipeline_fp32", {"backend": "fp32"}), ("pipeline_auto", {})):
        classify = pipeline(model=saved, trust_remote_code=True, device="cpu", **options)
        classify(tweets[:4])  # warm-up
        # the saved code's own backends module: its derived models are the ones this pipeline runs
        saved_backends = importlib.import_module(type(classify).__module__.rsplit(".", 1)[0] + ".backends_m2sa")
        served_model = saved_backends.model_for_backend(classify.model, classify.served_backend()[0])
        runs[name] = (args.num_tweets, functools.partial(classify, tweets, batch_size=args.batch_size),
                      classify.processor, [served_model])
    for name, options in BACKEND_PATHS.items():
        count = bf16_count if "bf16" in resolved(name, auto) else args.num_tweets
        runs[f"predict_{name}"] = (count, functools.partial(
            predict, model, processor, texts[:count], images[:count], batch_size=args.batch_size, **options),
            processor, [model_for_backend(model, options.get("backend", auto))])
    return runs


def staged(run, processor, models):
    """`run` as a callable that returns (its result, {stage: seconds} of that call; see `stage_timer`)."""
    def run_with_stages():
        with stage_timer(processor, models) as stages:
            result = run()
        return result, dict(stages)
    return run_with_stages


def paths_report(timings, auto, flops, peaks, agreement):
    """{path: speed, speed-ups, agreement with fp32, FLOP rate and its fraction of the path's arithmetic's peak}."""
    paper, fp32_predict = timings["paper_demo_fp32"], timings["predict_fp32"]
    paths = {}
    for name, timing in timings.items():
        rate = timing["tweets"] / timing["seconds"]
        arithmetic = resolved(name.split("_", 1)[1], auto)
        flops_per_tweet = flops["paper"] if name == "paper_demo_fp32" else flops["batched"]
        fp32_ids = fp32_predict["label_ids"][: timing["tweets"]]
        paths[name] = {
            "samples_per_second": rate,
            "samples_per_second_per_round": [timing["tweets"] / elapsed for elapsed in timing["seconds_per_round"]],
            "speedup_vs_fp32_predict": rate / (fp32_predict["tweets"] / fp32_predict["seconds"]),
            "speedup_vs_paper": rate * paper["seconds"] / paper["tweets"],
            "argmax_agreement_vs_fp32": agreement[name]["argmax_agreement_vs_fp32"] if name in agreement else
            sum(a == b for a, b in zip(timing["label_ids"], fp32_ids)) / timing["tweets"],
            "gflops_per_tweet": flops_per_tweet / 1e9,
            "achieved_gflops": rate * flops_per_tweet / 1e9,
            "fraction_of_peak": rate * flops_per_tweet / 1e9 / peaks[arithmetic],
            "peak_used": arithmetic,
        }
        if name in agreement:
            paths[name]["max_probability_difference_vs_fp32"] = agreement[name]["max_probability_difference"]
    return paths


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
    """GFLOP/s of the model's own linear layers run alone (FLOP-weighted over `shapes`) through each backend's layer:
    nn.Linear in fp32, `BFloat16Linear` on bf16 activations and this CPU's int8 layer; and of a 2048^3 fp32 matmul."""
    totals = defaultdict(float)
    flops = 0
    with torch.inference_mode():
        for (rows, in_features, out_features), count in shapes.items():
            layer = torch.nn.Sequential(torch.nn.Linear(in_features, out_features)).eval()
            activations = torch.randn(rows, in_features)
            bf16_layer, int8_layer = derived_model(layer, "bf16"), derived_model(layer, kernel_for_backend("int8"))
            bf16_activations = activations.to(torch.bfloat16)
            totals["fp32"] += count * seconds_per_call(lambda: layer(activations))
            totals["bf16"] += count * seconds_per_call(lambda: bf16_layer(bf16_activations))
            totals["int8"] += count * seconds_per_call(lambda: int8_layer(activations))
            flops += count * 2 * rows * in_features * out_features
        square = torch.randn(2048, 2048)
        square_gflops = 2 * 2048**3 / seconds_per_call(lambda: square @ square, 0.3) / 1e9
    return {**{name: flops / total / 1e9 for name, total in totals.items()}, "fp32_square_2048": square_gflops}


def memory_while(function):
    """`function()`'s result and how much the resident set grew: at its peak (polled every millisecond) and after."""
    gc.collect()
    before = peak = resident_bytes()
    done = threading.Event()

    def poll():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, resident_bytes())
            time.sleep(0.001)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        result = function()
    finally:
        done.set()
        poller.join()
    gc.collect()
    after = resident_bytes()
    return result, {"peak_increase_mib": (max(peak, after) - before) / 2**20, "kept_mib": (after - before) / 2**20}


def derived_model_memory(model):
    """Memory each fast backend's derived model adds to the fp32 model: the bytes of the tensors it holds of its own
    (the rest it shares with the model) and the resident-set growth while it is made, at its peak and after; against
    the int8 size of the model's linear weights (the least an int8 path must add). Run in a process of its own with
    glibc returning every freed block over 64 KiB at once, so the resident set follows the live tensors."""
    linear_int8_mib = sum(module.weight.numel() for module in model.modules()
                          if isinstance(module, torch.nn.Linear)) / 2**20
    shared = {tensor.data_ptr() for tensor in (*model.parameters(), *model.buffers())}
    report = {"linear_weights_int8_mib": linear_int8_mib}
    for backend in ("int8", "bf16"):
        derived, grown = memory_while(lambda: model_for_backend(model, backend))
        own_mib = sum(tensor.numel() * tensor.element_size() for tensor in (*derived.parameters(), *derived.buffers())
                      if tensor.data_ptr() not in shared) / 2**20
        report[backend] = {"own_tensors_mib": own_mib, **grown,
                           "peak_over_linear_int8_size": grown["peak_increase_mib"] / linear_int8_mib}
    return report


def memory_in_own_process(data_root):
    """`derived_model_memory` of the paper-scale model, measured in a child process (see there)."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "memory.json"
        run_again(["--memory-only", str(out), "--data-root", str(data_root)], check=True,
                  env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
        return json.loads(out.read_text())


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


def real_agreement_tweets(data_root, with_images):
    """Real tweets: the MVSA texts with their images and again without (text only, when the model has no vision
    tower: once), and the English UMSAB validation texts."""
    mvsa_texts, image_paths = mvsa_tweets(data_root)
    umsab_texts = umsab_english_validation(data_root)
    if not with_images:
        return mvsa_texts + umsab_texts, None
    return (mvsa_texts * 2 + umsab_texts,
            image_paths + [None] * (len(mvsa_texts) + len(umsab_texts)))


def agreement_on_trained_model(model_dir, batch_size, native_bf16, data_root):
    """Argmax agreement and largest probability difference of every fast path against fp32 `predict` on real
    tweets."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
    texts, images = real_agreement_tweets(data_root, model.config.vision_config is not None)
    fp32 = predict(model, processor, texts, images, batch_size=batch_size, on_invalid_image="text_only",
                   backend="fp32")
    fast_paths = [name for name in BACKEND_PATHS if name != "fp32" and (native_bf16 or "bf16" not in name)]
    report = {"model": model_name(model_dir), "num_tweets": len(texts)}
    for name in fast_paths:
        results = predict(model, processor, texts, images, batch_size=batch_size, on_invalid_image="text_only",
                          **BACKEND_PATHS[name])
        report[f"predict_{name}"] = {
            "argmax_agreement_vs_fp32": sum(a["label"] == b["label"] for a, b in zip(results, fp32)) / len(fp32),
            "max_probability_difference": max(abs(a["probabilities"][k] - b["probabilities"][k])
                                              for a, b in zip(results, fp32) for k in a["probabilities"]),
        }
    report["pipeline_auto"] = report["predict_auto"]  # the same pipeline, loaded from the saved model
    return report


def resolved(path_name, auto):
    """The arithmetic a path runs: "fp32", "bf16" or "int8" ("auto" is what it chose here)."""
    backend = path_name.split("_")[-1] if path_name != "bf16_autocast" else "bf16"
    return auto if backend == "auto" else backend


def print_report(report, seconds):
    cpu, peaks, memory = report["cpu"], report["gemm_peak_gflops"], report["derived_model_memory"]
    print(f"CPU: {cpu['model']} ({' '.join(cpu['flags'])}), {report['threads']} threads, torch {report['torch']}; "
          f"auto runs {report['auto_backend']['backend']} ({report['auto_backend']['reason']}); "
          f"{report['num_tweets']} tweets (bf16: {report['bf16_num_tweets']}), batch {report['batch_size']}\n")
    print("| path | samples/s (best round) | rounds | vs paper demo path | vs fp32 predict | argmax agreement vs fp32 "
          "| GFLOP/s | fraction of peak |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, path in report["paths"].items():
        rounds = path["samples_per_second_per_round"]
        print(f"| {name} | {path['samples_per_second']:.2f} | "
              f"{f'{min(rounds):.1f}–{max(rounds):.1f}' if rounds else '1 run'} | {path['speedup_vs_paper']:.1f}x | "
              f"{path['speedup_vs_fp32_predict']:.2f}x | {path['argmax_agreement_vs_fp32']:.1%} | "
              f"{path['achieved_gflops']:.0f} | {path['fraction_of_peak']:.0%} of {path['peak_used']} |")
    print(f"\nMatmul peak on the model's linear shapes: fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f}, int8 "
          f"{peaks['int8']:.0f} GFLOP/s (2048^3 fp32 matmul: {peaks['fp32_square_2048']:.0f}).")
    print(f"Derived models over fp32 (linear weights at int8: {memory['linear_weights_int8_mib']:.0f} MiB): " + ", ".join(
        f"{backend} holds {memory[backend]['own_tensors_mib']:.0f} MiB of its own, resident set +"
        f"{memory[backend]['peak_increase_mib']:.0f} MiB at peak ({memory[backend]['peak_over_linear_int8_size']:.2f}x)"
        f", +{memory[backend]['kept_mib']:.0f} MiB after" for backend in ("int8", "bf16")))
    agreement = report["agreement"]
    print(f"Agreement model: {agreement['model']} ({agreement['num_tweets']} real tweets): " + ", ".join(
        f"{name} {entry['argmax_agreement_vs_fp32']:.1%}, max |Δp| {entry['max_probability_difference']:.3f}"
        for name, entry in agreement.items() if isinstance(entry, dict) and name.startswith("predict")))
    print("\n| path | " + " | ".join(STAGES) + " | other | total (s) |")
    print("|---|" + "---:|" * (len(STAGES) + 2))
    for name, stages in report["stage_seconds"].items():
        total = seconds[name]
        print(f"| {name} | " + " | ".join(f"{stages.get(stage, 0.0):.2f} ({stages.get(stage, 0.0) / total:.0%})"
                                          for stage in (*STAGES, "other")) + f" | {total:.2f} |")


if __name__ == "__main__":
    main()

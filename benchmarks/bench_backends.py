"""The inference backends on this CPU kind: what `backend="auto"` serves here and why, how fast every backend and
int8 kernel runs against fp32, and how often each agrees with fp32, on a trained model over real tweets. One run
records one CPU kind into `benchmarks/results/backends.json` and keeps the kinds recorded before (the Performance page
has a table per kind).

Model: a text-only M2SA classifier whose all-MiniLM-L6-v2 tower `train.py` fine-tuned on UMSAB English
(`--model DIR`; by default `outputs/m2sa-umsab-en-minilm`, trained on first use, about 6 minutes on 2 cores).
Tweets: real English tweets from the data root, the 324 UMSAB validation tweets and the 400 MVSA texts (724).

The parts, timed in turns where they are timed (every path once per round, `--rounds` rounds, the best round counts):
- `pipeline`: what a user gets, `pipeline(model=DIR, trust_remote_code=True, backend=...)` over `--num-tweets`
  tweets in batches of `--batch-size`, for fp32, int8, bf16 and auto (the default).
- `forward`: the model's forward over the same tweets encoded once, for fp32, every int8 kernel the package has
  (`backends_m2sa.INT8_KERNELS`), bf16, and torchao's int8 recipes where torchao is installed.
- `profile` (under `torch.profiler`, so slower than the timed parts): where a pipeline call's time goes per backend,
  in the forward and outside it, and the forward's operators by group (linear layers, attention, norms and
  activations, dtype conversions, int8's activation quantization, other).
- `layers`: the model's own linear-layer shapes over `PROBE_ROWS` tokens, each kernel against fp32: what `auto`'s
  probe measures.
- `arithmetic` (not timed): the agreement with fp32 of each arithmetic of the agreement record (bf16, int8 with
  `torch._int_mm`'s 8-bit and fbgemm's 7-bit activations), computed without their kernels, on every tweet, beside
  the record the model carries; and fbgemm's error against exact integer arithmetic with 8-bit and 7-bit activations
  (8 bits overflow 16-bit sums on CPUs without VNNI).
A path more than four times slower than fp32 in a warm-up batch (a kernel without a fast path on this CPU) is timed
and compared on `--slow-num-tweets` tweets only; the results give every path's n.

Another CPU kind can be emulated on a better machine (`--as-cpu avx2` or `--as-cpu default`): the benchmark reruns
itself with PyTorch's `ATEN_CPU_CAPABILITY` and oneDNN's `ONEDNN_MAX_CPU_ISA` capped, and records the run as emulated.
Some kernels dispatch on the CPU's own flags and ignore those caps (fbgemm, `torch._int_mm`'s oneDNN path reads
cpuinfo); the `layers` part is measured with and without the caps so the results show which kernels a cap reached.

    python -m benchmarks.bench_backends [--as-cpu avx2|default] [--parts layers arithmetic forward pipeline]
                                        [--num-tweets 256] [--batch-size 64] [--rounds 3]
"""

import argparse
import copy
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoProcessor, pipeline

from benchmarks.cpu_info import CPU_CAPS, cpu_description, rerun_as_cpu
from benchmarks.harness import REPO_ROOT, benchmark_parser, in_turns, require_data, write_results
from benchmarks.models import UMSAB_ENGLISH_MODEL, umsab_english_model_dir
from benchmarks.tweets import english_agreement_tweets
from modeling_m2sa import backends_m2sa
from modeling_m2sa.backend_agreement import arithmetic_models
from modeling_m2sa.export import export

KERNELS = (*backends_m2sa.INT8_KERNELS, "bf16")
PARTS = ("layers", "arithmetic", "forward", "pipeline", "profile")
SLOW = 4.0
"""A path this many times slower than fp32 in its warm-up batch is measured on --slow-num-tweets tweets only."""
OP_GROUPS = {
    "linear layers": ("aten::addmm", "aten::mm", "aten::_int_mm", "quantized::linear_dynamic"),
    "attention": ("aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product", "aten::_softmax", "aten::softmax"),
    "norms and activations": ("aten::native_layer_norm", "aten::gelu", "aten::tanh"),
    "dtype conversions": ("aten::to", "aten::_to_copy", "aten::copy_"),
    "activation quantization (int8)": ("aten::round", "aten::amax", "aten::abs", "aten::clamp", "aten::div"),
}
"""Where the profile part counts each operator's own time, by the start of its name; the rest is "other"."""


def agreement(probabilities, exact):
    """Share of tweets whose label is fp32's, and the largest probability difference, of (tweets, labels)
    probabilities against fp32's (its first rows where fewer tweets were compared)."""
    exact = exact[: len(probabilities)]
    return {"argmax_agreement_vs_fp32": (probabilities.argmax(-1) == exact.argmax(-1)).float().mean().item(),
            "max_probability_difference": (probabilities - exact).abs().max().item(),
            "agreement_n": len(probabilities)}


def pipeline_part(model_dir, tweets, agreement_tweets, args):
    """tweets/s and agreement of `pipeline(model=DIR, backend=...)` for every backend; auto as the default."""
    options = {"fp32": {"backend": "fp32"}, "int8": {"backend": "int8"}, "bf16": {"backend": "bf16"}, "auto": {}}
    with warnings.catch_warnings():  # bf16 on a CPU without native bf16 warns that it is slow: it is measured here
        warnings.simplefilter("ignore")
        pipes = {name: pipeline(model=str(model_dir), trust_remote_code=True, device="cpu", **option)
                 for name, option in options.items()}
        warm = {}
        for name, pipe in pipes.items():
            pipe(tweets[: args.batch_size], batch_size=args.batch_size)  # warm-up: derived model, probe
            start = time.perf_counter()
            pipe(tweets[: args.batch_size], batch_size=args.batch_size)
            warm[name] = time.perf_counter() - start
        counts = {name: args.slow_num_tweets if warm[name] > SLOW * warm["fp32"] else len(tweets) for name in pipes}
        runs = {name: (lambda pipe=pipe, n=counts[name]: pipe(tweets[:n], batch_size=args.batch_size))
                for name, pipe in pipes.items()}
        seconds, _ = in_turns(runs, args.rounds)
        exact = pipeline_probabilities(pipes["fp32"], agreement_tweets, args.batch_size)
        report = {}
        for name, pipe in pipes.items():
            n_agree = len(agreement_tweets) if counts[name] == len(tweets) else args.slow_num_tweets
            served, reason = pipe.served_backend()
            report[name] = {"served": served, "reason": reason, "num_tweets": counts[name],
                            "tweets_per_second": counts[name] / min(seconds[name]),
                            "tweets_per_second_per_round": [counts[name] / s for s in seconds[name]],
                            **agreement(pipeline_probabilities(pipe, agreement_tweets[:n_agree], args.batch_size),
                                        exact)}
    fp32_rate = report["fp32"]["tweets_per_second"]
    for entry in report.values():
        entry["speedup_vs_fp32"] = entry["tweets_per_second"] / fp32_rate
    return report


def profile_part(model_dir, tweets, args):
    """Where a pipeline call's time goes, per backend (those not slow here): its whole call, the model's forward
    passes within it (the rest is tokenising, batching and post-processing), and the forward's operators grouped by
    `OP_GROUPS` (their own time under `torch.profiler`, whose overhead the shares include)."""
    report, warm = {}, {}
    for backend in ("fp32", "bf16", "int8"):
        pipe = pipeline(model=str(model_dir), trust_remote_code=True, device="cpu", backend=backend)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe(tweets[: args.batch_size], batch_size=args.batch_size)  # warm-up: derived model, probe
            start = time.perf_counter()
            pipe(tweets[: args.batch_size], batch_size=args.batch_size)
            warm[backend] = time.perf_counter() - start
        if warm[backend] > SLOW * warm["fp32"]:
            report[backend] = {"skipped": f"more than {SLOW:g}x slower than fp32 in a warm batch"}
            continue
        forward_seconds, forward = [], pipe._forward

        def timed_forward(*arguments, **options):
            begin = time.perf_counter()
            outputs = forward(*arguments, **options)
            forward_seconds.append(time.perf_counter() - begin)
            return outputs

        pipe._forward = timed_forward
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            start = time.perf_counter()
            pipe(tweets, batch_size=args.batch_size)
            total = time.perf_counter() - start
        operators = {group: 0.0 for group in [*OP_GROUPS, "other"]}
        for event in profile.key_averages():
            group = next((name for name, prefixes in OP_GROUPS.items() if event.key.startswith(prefixes)), "other")
            operators[group] += event.self_cpu_time_total / 1e6
        operator_total = sum(operators.values())
        report[backend] = {"pipeline_seconds": total, "forward_seconds": sum(forward_seconds),
                           "outside_forward_share": 1 - sum(forward_seconds) / total,
                           "operator_shares": {group: seconds / operator_total for group, seconds in operators.items()}}
    return report


def pipeline_probabilities(pipe, texts, batch_size):
    """(tweets, labels) probabilities the pipeline gives, in the model's label order."""
    labels = pipe.model.config.label_names
    return torch.tensor([[{entry["label"]: entry["score"] for entry in ranked}[label] for label in labels]
                         for ranked in pipe(texts, batch_size=batch_size, top_k=None)])


def torchao_models(model):
    """torchao's int8 recipes applied to copies of `model`, where torchao is installed: {name: model}."""
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
    except ImportError:
        return {}
    made = {}
    for name, config in (("torchao_int8_dynamic", Int8DynamicActivationInt8WeightConfig()),
                         ("torchao_int8_weight_only", Int8WeightOnlyConfig())):
        quantized = copy.deepcopy(model)
        quantize_(quantized, config)
        made[name] = quantized.eval()
    return made


def encode_sorted(processor, texts, batch_size):
    """[(rows, encoded batch)] of `texts` sorted by token count, as the pipeline sorts them."""
    counts = [len(ids) for ids in processor.tokenize(texts, padding=False, return_tensors=None)["input_ids"]]
    order = sorted(range(len(texts)), key=counts.__getitem__)
    return [(order[start:start + batch_size], processor(text=[texts[row] for row in order[start:start + batch_size]]))
            for start in range(0, len(texts), batch_size)]


def forward_logits(model, encoded, bf16=False):
    """The model's logits over `encoded` batches, in the texts' order."""
    rows, out = [], []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for batch_rows, inputs in encoded:
            rows += batch_rows
            out.append(model(**inputs).logits.float())
    return torch.cat(out)[torch.tensor(rows).argsort()]


def forward_part(model, processor, tweets, agreement_tweets, args):
    """tweets/s and agreement of the model's forward for fp32, each int8 kernel, bf16 and torchao's recipes, over
    tweets encoded once (sorted by token count, batches of --batch-size)."""
    models = {"fp32": model, **{kernel: backends_m2sa.derived_model(model, kernel) for kernel in KERNELS},
              **torchao_models(model)}
    timed = encode_sorted(processor, tweets, args.batch_size)
    warm = {}
    for name in models:
        forward_logits(models[name], timed[:1], bf16=name == "bf16")
        start = time.perf_counter()
        forward_logits(models[name], timed[:1], bf16=name == "bf16")
        warm[name] = time.perf_counter() - start
    slow = encode_sorted(processor, tweets[: args.slow_num_tweets], args.batch_size)
    counts = {name: args.slow_num_tweets if warm[name] > SLOW * warm["fp32"] else len(tweets) for name in models}
    runs = {name: (lambda name=name: forward_logits(models[name], timed if counts[name] == len(tweets) else slow,
                                                    bf16=name == "bf16")) for name in models}
    seconds, _ = in_turns(runs, args.rounds)
    exact = forward_logits(model, encode_sorted(processor, agreement_tweets, args.batch_size)).softmax(-1)
    report = {}
    for name in models:
        compared = agreement_tweets if counts[name] == len(tweets) else agreement_tweets[: args.slow_num_tweets]
        logits = forward_logits(models[name], encode_sorted(processor, compared, args.batch_size),
                                bf16=name == "bf16")
        report[name] = {"num_tweets": counts[name], "tweets_per_second": counts[name] / min(seconds[name]),
                        "tweets_per_second_per_round": [counts[name] / s for s in seconds[name]],
                        "speedup_vs_fp32": min(seconds["fp32"]) / len(tweets) * counts[name] / min(seconds[name]),
                        **agreement(logits.softmax(-1), exact)}
    return report


def fbgemm_overflow(model, processor, tweets):
    """Largest difference between fbgemm's dynamic int8 linear and exact integer arithmetic on the same quantized
    operands, with 8-bit (`reduce_range=False`) and 7-bit activations, on the real activations that reach the model's
    first feed-forward layer: 8 bits overflow the 16-bit pair sums of CPUs without VNNI."""
    layer = next(module for name, module in model.named_modules() if name.endswith("intermediate.dense"))
    captured = []
    hook = layer.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].reshape(-1, inputs[0]
                                                                                                    .shape[-1])))
    forward_logits(model, encode_sorted(processor, tweets, 64)[:1])
    hook.remove()
    rows = captured[0] / captured[0].abs().amax(dim=1, keepdim=True).clamp(min=1e-12)  # FbgemmInt8Linear's scaling
    packed = backends_m2sa.FbgemmInt8Linear(layer).packed_weight
    weight = torch.ops.quantized.linear_unpack(packed)[0].dequantize()
    report = {"layer_output_mean_magnitude": (rows @ weight.t()).abs().mean().item()}
    for bits, reduce_range in ((7, True), (8, False)):
        with torch.inference_mode():
            fbgemm = torch.ops.quantized.linear_dynamic(rows, packed, reduce_range)
        low, high = min(rows.min().item(), 0.0), max(rows.max().item(), 0.0)
        scale = (high - low) / (2 ** bits - 1)
        zero_point = round(-low / scale)
        dequantized = ((rows / scale).round() + zero_point).clamp(0, 2 ** bits - 1).sub(zero_point).mul(scale)
        report[f"{bits}_bit_max_error_vs_exact"] = (fbgemm - dequantized @ weight.t()).abs().max().item()
    return report


def arithmetic_part(model, processor, agreement_tweets, args):
    """Each arithmetic of the agreement record (`backend_agreement.arithmetic_models`: bf16, int8 with 8-bit and with
    fbgemm's 7-bit activations, computed without their kernels) against fp32 on every tweet, beside the record the
    model carries (its validation split); and fbgemm's error against exact integer arithmetic in 8 and 7 bits."""
    encoded = encode_sorted(processor, agreement_tweets, args.batch_size)
    exact = forward_logits(model, encoded).softmax(-1)
    report = {"model_record": model.config.backend_agreement}
    for arithmetic, derived, autocast in arithmetic_models(model):
        with autocast():
            report[f"arithmetic_{arithmetic}"] = agreement(forward_logits(derived, encoded).softmax(-1), exact)
    if backends_m2sa.fbgemm_available():
        report["fbgemm_overflow"] = fbgemm_overflow(model, processor, agreement_tweets)
    return report


def layers_part(model):
    """Each kernel against fp32 on the model's linear-layer shapes (`auto`'s probe, measured afresh)."""
    shapes = backends_m2sa.linear_shapes(model)
    report = {"shapes": [[*shape, count] for shape, count in shapes], "rows": backends_m2sa.PROBE_ROWS}
    for kernel in KERNELS:
        kernel_seconds, fp32_seconds = backends_m2sa.time_kernel_against_fp32(kernel, shapes)
        report[kernel] = {"kernel_ms": kernel_seconds * 1e3, "fp32_ms": fp32_seconds * 1e3,
                          "speedup_vs_fp32": fp32_seconds / kernel_seconds}
    return report


def kind_label(cpu):
    """The results file's key for this CPU kind: model name and flags, and the cap when emulated."""
    flags = " ".join(cpu["flags"]) or "no AVX2"
    return f"{cpu['model']} ({flags})" + (f" as {cpu['emulated_as']}" if cpu["emulated_as"] else "")


def measure(args):
    with tempfile.TemporaryDirectory() as current:
        # saved again by this package, so the pipeline runs this version's code, not the one saved with the model
        return measure_model(export(umsab_english_model_dir(args.model, args.data_root), current), args)


def measure_model(model_dir, args):
    tweets = english_agreement_tweets(args.data_root)
    timed_tweets = tweets[: args.num_tweets]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
    isa = backends_m2sa.cpu_instruction_sets()
    report = {
        "cpu": cpu_description(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rule": {"cpu": backends_m2sa.cpu_description(isa), "candidates": backends_m2sa.cpu_kernels(isa)},
        "model": str(args.model or UMSAB_ENGLISH_MODEL),
        "num_tweets": len(timed_tweets), "agreement_tweets": len(tweets), "slow_num_tweets": args.slow_num_tweets,
        "batch_size": args.batch_size, "rounds": args.rounds,
        "timing": "paths timed in turns, once per round; tweets_per_second is the best round's",
    }
    parts = {"layers": lambda: layers_part(model),
             "arithmetic": lambda: arithmetic_part(model, processor, tweets, args),
             "forward": lambda: forward_part(model, processor, timed_tweets, tweets, args),
             "pipeline": lambda: pipeline_part(model_dir, timed_tweets, tweets, args),
             "profile": lambda: profile_part(model_dir, timed_tweets, args)}
    for name in args.parts:
        report[name] = parts[name]()
    return report


def main():
    args = arguments()
    require_data(args.data_root, "umsab", "mvsa_sample")
    if args.child_report is not None:
        write_results(args.child_report, measure(args))
        return
    if args.as_cpu is not None and "layers" not in args.parts:
        sys.exit("--as-cpu measures which kernels the cap reaches, which needs the layers part.")
    report = measure_as_cpu(args) if args.as_cpu is not None else measure(args)
    # one entry per CPU kind: a run replaces the parts it measured of its own kind and keeps everything else
    kinds = json.loads(args.out.read_text())["kinds"] if args.out.is_file() else {}
    label = kind_label(report["cpu"])
    kinds[label] = {**kinds.get(label, {}), **report}
    write_results(args.out, {"kinds": kinds})
    print_report(label, kinds[label])


def arguments():
    parser = benchmark_parser(__doc__, out="backends.json", data_root=True)
    parser.add_argument("--model", type=Path, default=None,
                        help=f"a trained text model (default: {UMSAB_ENGLISH_MODEL.relative_to(REPO_ROOT)}, "
                             f"trained on first use)")
    parser.add_argument("--as-cpu", choices=sorted(CPU_CAPS), default=None,
                        help="emulate a lesser CPU kind by capping the ISA the kernels use")
    parser.add_argument("--num-tweets", type=int, default=256)
    parser.add_argument("--slow-num-tweets", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to measure (default: all); a run of some parts keeps the kind's other parts")
    parser.add_argument("--child-report", type=Path, help=argparse.SUPPRESS)  # the capped child of --as-cpu
    return parser.parse_args()


def measure_as_cpu(args):
    """The report of a run capped to `--as-cpu` (in a child process), with how much slower each kernel's linear layers
    ran capped than here uncapped (`cap_reach`)."""
    uncapped = layers_part(AutoModelForSequenceClassification.from_pretrained(
        umsab_english_model_dir(args.model, args.data_root), trust_remote_code=True))
    child = args.out.with_suffix(".child.tmp")
    if rerun_as_cpu(args.as_cpu, ["--child-report", str(child)]) != 0:
        sys.exit(f"The run as {args.as_cpu} failed (its output is above).")
    report = json.loads(child.read_text())
    child.unlink()
    # a kernel the cap reached runs slower capped than not; one it did not reach runs alike (within noise)
    report["cap_reach"] = {kernel: {"uncapped_ms": uncapped[kernel]["kernel_ms"],
                                    "capped_ms": report["layers"][kernel]["kernel_ms"],
                                    "capped_over_uncapped": report["layers"][kernel]["kernel_ms"]
                                    / uncapped[kernel]["kernel_ms"]} for kernel in KERNELS}
    report["cap_reach"]["fp32"] = {"uncapped_ms": uncapped["int_mm"]["fp32_ms"],
                                   "capped_ms": report["layers"]["int_mm"]["fp32_ms"],
                                   "capped_over_uncapped": report["layers"]["int_mm"]["fp32_ms"]
                                   / uncapped["int_mm"]["fp32_ms"]}
    return report


def print_report(label, report):
    rule = report["rule"]
    print(f"{label}{' (emulated)' if report['cpu']['emulated_as'] else ''}, {report['threads']} threads, torch "
          f"{report['torch']}: {rule['cpu']}, candidates {', '.join(rule['candidates']) or 'none'}" + (
              f"; auto serves {report['pipeline']['auto']['served']} ({report['pipeline']['auto']['reason']})"
              if "pipeline" in report else "") + "\n")
    print("| path | served | tweets/s (best round) | rounds | vs fp32 | argmax agreement vs fp32 (n) | max abs dp |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for part in ("pipeline", "forward"):
        for name, entry in report.get(part, {}).items():
            rounds = entry["tweets_per_second_per_round"]
            print(f"| {part} {name} | {entry.get('served', '')} | {entry['tweets_per_second']:.1f} | "
                  f"{min(rounds):.1f}-{max(rounds):.1f} | {entry['speedup_vs_fp32']:.2f}x | "
                  f"{entry['argmax_agreement_vs_fp32']:.1%} ({entry['agreement_n']}) | "
                  f"{entry['max_probability_difference']:.3f} |")
    arithmetic = report.get("arithmetic", {})
    if arithmetic.get("model_record"):
        record = arithmetic["model_record"]
        print(f"the model's record ({record['tweets']} {record['split']} tweets): " + ", ".join(
            f"{name} {share:.1%}" for name, share in record["agreement"].items()))
    for name, entry in arithmetic.items():
        if name.startswith("arithmetic_"):
            print(f"{name} (fp32 arithmetic): {entry['argmax_agreement_vs_fp32']:.1%} of labels as fp32 "
                  f"(n {entry['agreement_n']}), largest probability change {entry['max_probability_difference']:.3f}")
    if "fbgemm_overflow" in arithmetic:
        print("fbgemm against exact integer arithmetic: " + ", ".join(
            f"{key} {value:.4f}" for key, value in arithmetic["fbgemm_overflow"].items()))
    for backend, entry in report.get("profile", {}).items():
        if "skipped" in entry:
            print(f"profile {backend}: skipped ({entry['skipped']})")
            continue
        print(f"profile {backend}: pipeline {entry['pipeline_seconds']:.2f} s, forward {entry['forward_seconds']:.2f} s "
              f"({entry['outside_forward_share']:.0%} outside the forward); forward operators: " + ", ".join(
                  f"{group} {share:.0%}" for group, share in entry["operator_shares"].items()))
    if "layers" in report:
        print(f"\nLinear layers ({report['layers']['rows']} tokens each): " + ", ".join(
            f"{kernel} {entry['kernel_ms']:.1f} ms vs fp32 {entry['fp32_ms']:.1f} ms ({entry['speedup_vs_fp32']:.2f}x)"
            for kernel, entry in report["layers"].items() if isinstance(entry, dict)))
    if "cap_reach" in report:
        print("Capped / uncapped time per kernel (1.0: the cap did not reach it): " + ", ".join(
            f"{kernel} {entry['capped_over_uncapped']:.2f}" for kernel, entry in report["cap_reach"].items()))


if __name__ == "__main__":
    main()

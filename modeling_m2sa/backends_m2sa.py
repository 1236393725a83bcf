"""Inference backends of the M2SA pipeline: how the arithmetic of a forward pass is done.

- "fp32": the model as it is (exact; what every other backend is measured against).
- "bf16": the linear layers' weights held once in bfloat16 and the forward run under bf16 autocast, so matrix
  products (linear layers and attention) run in bf16 on the CPU's AMX / AVX512-BF16 units or a GPU's tensor cores.
  Layer norms, softmax and the residual sums stay in fp32 (autocast keeps them there), which is what keeps the
  answers within bf16 rounding of fp32.
- "int8": the linear layers in int8 with per-output-feature weight scales and per-token activation scales, on the
  CPU, through the int8 kernel that is fast on this CPU (`int8_kernel`): `torch._int_mm` where the CPU has
  AVX512-VNNI, fbgemm's dynamic quantized linear on other x86 CPUs with AVX2 (7-bit activations there).
- "auto": the fastest of these that the model's own agreement record allows, on the machine it runs on
  (`auto_backend`). The record (`config.backend_agreement`, written where the model is made: `train.py`, the grid,
  `python -m modeling_m2sa.export --dataset ...`) says on how many validation tweets each arithmetic gave fp32's
  label; an arithmetic below `AGREEMENT_FLOOR` is never served by "auto". Among the kernels with a fast path on this
  CPU that the record allows, each is timed once per process against fp32 on the model's own linear-layer shapes,
  and the fastest that beats fp32 is served; otherwise fp32. A model saved without a record may be served bf16 only
  (`UNRECORDED_ARITHMETIC`). On a GPU: bf16 where the record allows it, else fp32.

A non-fp32 backend runs a *derived* model: a second module tree that shares every parameter and buffer with the
model (embeddings, norms, convolutions, biases: no second copy) and holds only its own low-precision linear weights.
It is made on first use, once per model and backend even when requests arrive at once, and remade when any parameter
or buffer of the model changed (training steps, `load_state_dict`, `.to()`, `resize_token_embeddings`).
"""

import copy
import functools
import itertools
import math
import threading
import time
import warnings
import weakref
from collections import Counter

import torch
from torch import nn

from .configuration_m2sa import INFERENCE_BACKENDS as BACKENDS
from .errors_m2sa import M2SAError

CONFIG_BACKEND_KEY = "inference_backend"  # written by `python -m modeling_m2sa.export --backend ...`
CONFIG_AGREEMENT_KEY = "backend_agreement"  # the agreement record: see `auto_backend`
CPU_ONLY_BACKENDS = ("int8",)
AGREEMENT_FLOOR = 0.99
"""The share of tweets on which an arithmetic must give fp32's label for "auto" to serve it."""
KERNEL_ARITHMETIC = {"bf16": "bf16", "int_mm": "int8", "fbgemm": "int8_7bit"}
"""The arithmetic each kernel does, as the agreement record names it: bf16 operands with fp32 accumulation; int8
weights and 8-bit per-token activations (`torch._int_mm`); int8 weights and 7-bit activations (fbgemm)."""
UNRECORDED_ARITHMETIC = ("bf16",)
"""What "auto" may serve for a model saved without an agreement record. bf16 gave fp32's label on 99.7-99.8 % of real
held-out tweets for a MiniLM fine-tuned by train.py on a Zen 4 CPU and 99.9 % on an AMX Xeon; int8 changed 1.2-1.8 %
of that model's labels on the Zen 4 (docs, Performance), so int8 is served only where a model's record allows it."""


def check_backend(backend):
    """`backend` if it is one of BACKENDS; otherwise an M2SAError that names the choices."""
    if backend not in BACKENDS:
        raise M2SAError(
            f"backend must be one of {list(BACKENDS)}, got {backend!r}: 'auto' picks the fastest that agrees with "
            f"fp32 on this machine, 'fp32' runs the model as saved, 'bf16' its matrix products in bfloat16 (CPUs "
            f"with AMX or AVX512-BF16, GPUs), 'int8' its linear layers in int8 (CPUs).", code="bad_option"
        )
    return backend


def configured_backend(config):
    """The backend a saved model asks for (`config.inference_backend`, set by the export command); "auto" for configs
    saved without one."""
    return getattr(config, CONFIG_BACKEND_KEY, "auto")


@functools.lru_cache(maxsize=None)
def cpu_instruction_sets():
    """The CPU features the backends depend on: {"amx", "avx512_bf16", "avx512_vnni", "avx512", "avx2"} -> bool.

    The features are cpuinfo's (`torch.cpu.get_capabilities()`), capped by the widest vector ISA torch's kernels may
    use (`torch.backends.cpu.get_cpu_capability()`, which honours `ATEN_CPU_CAPABILITY`): a process capped to AVX2
    is treated as an AVX2-only CPU, which is how the benchmarks emulate a lesser CPU."""
    capability = torch.backends.cpu.get_cpu_capability()
    features = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    avx512 = capability.startswith("AVX512")
    return {"amx": avx512 and bool(features.get("amx_bf16") and features.get("amx_int8")),
            "avx512_bf16": avx512 and bool(features.get("avx512_bf16")),
            "avx512_vnni": avx512 and bool(features.get("avx512_vnni")),
            "avx512": avx512, "avx2": capability == "AVX2" or avx512}


def fbgemm_available():
    """Whether this torch has fbgemm's dynamic quantized linear (x86 builds; PyTorch deprecates its quantized tensors,
    so a later release may not)."""
    return ("fbgemm" in torch.backends.quantized.supported_engines
            and hasattr(torch.ops.quantized, "linear_dynamic") and hasattr(torch.ops.quantized, "linear_prepack"))


def cpu_description(isa):
    """The CPU kind in words, from its features `isa` (see `cpu_instruction_sets`)."""
    if isa["amx"]:
        return "a CPU with AMX"
    if isa["avx512_bf16"]:
        return "a CPU with AVX512-BF16 and AVX512-VNNI, no AMX"
    if isa["avx512_vnni"]:
        return "a CPU with AVX512-VNNI, no AMX or AVX512-BF16"
    if isa["avx2"]:
        return f"a CPU with {'AVX512 without VNNI' if isa['avx512'] else 'AVX2 and no AVX512'}"
    return "a CPU without AVX2"


def cpu_kernels(isa):
    """The low-precision kernels with a fast path on a CPU with the features `isa`, the candidates of "auto":

    - bf16 where the CPU computes bfloat16 natively (AMX or AVX512-BF16; elsewhere a bf16 product is ~50x slower);
    - `torch._int_mm` where it has AVX512-VNNI (on an AVX2-only CPU it ran 40x *slower* than fp32);
    - fbgemm's int8 kernel on other x86 CPUs with AVX2 (7-bit activations there: its 8-bit mode overflows the 16-bit
      pair sums of its AVX2 kernel).
    """
    kernels = ["bf16"] if isa["amx"] or isa["avx512_bf16"] else []
    if isa["avx512_vnni"]:
        kernels.append("int_mm")
    elif isa["avx2"] and fbgemm_available():
        kernels.append("fbgemm")
    return kernels


def int8_kernel():
    """The int8 kernel `backend="int8"` runs on this CPU: `torch._int_mm` where it is fast (AVX512-VNNI, and CPUs
    without AVX2, where nothing else is), fbgemm's on other x86 CPUs with AVX2."""
    isa = cpu_instruction_sets()
    return "fbgemm" if isa["avx2"] and not isa["avx512_vnni"] and fbgemm_available() else "int_mm"


class Int8Linear(nn.Module):
    """`nn.Linear` in int8 through `torch._int_mm`: symmetric per-output-feature weight scales, symmetric per-row
    (per-token) activation scales, int32 accumulation. Fast only on CPUs with AVX512-VNNI (and AMX); elsewhere
    `torch._int_mm` falls back to a slow generic loop. Per-token activation scales are what keep the answers of
    trained text towers within quantization noise of fp32 (a single scale per batch lets one outlier token coarsen
    every other one). The bias is the fp32 layer's own tensor, not a copy."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        weight_scale = weight.abs().amax(dim=1).float().clamp(min=1e-12) / 127
        # (in_features, out_features): the layout `torch._int_mm` multiplies by fastest
        self.register_buffer("weight_int8", torch.round(weight / weight_scale[:, None]).to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        rows = hidden_states.reshape(-1, self.in_features).float()
        row_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
        rows_int8 = (rows / row_scale).round_().to(torch.int8)
        output = torch._int_mm(rows_int8, self.weight_int8).float().mul_(row_scale).mul_(self.weight_scale)
        if self.bias is not None:
            output.add_(self.bias)
        return output.reshape(*hidden_states.shape[:-1], self.out_features).to(hidden_states.dtype)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class FbgemmInt8Linear(nn.Module):
    """`nn.Linear` in int8 through fbgemm's dynamic quantized linear (`quantized::linear_dynamic`), whose AVX2 and
    AVX512 kernels are fast on CPUs without VNNI. Weights: symmetric per-output-feature int8 scales, as `Int8Linear`.
    Activations: fbgemm quantizes a whole batch with one scale; dividing every token by its own largest magnitude
    first (and multiplying its output back) turns that into a per-token scale, which is what keeps trained towers'
    answers with fp32's. Activations are quantized to 7 bits (fbgemm's `reduce_range`, which keeps its AVX2 kernel's
    16-bit pair sums from saturating). The bias is the fp32 layer's own tensor, not a copy."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        weight_scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        with warnings.catch_warnings():  # PyTorch's deprecation notice for quantized tensors: nothing a user can do
            warnings.simplefilter("ignore")
            quantized = torch.quantize_per_channel(weight, weight_scale.double(), torch.zeros_like(
                weight_scale, dtype=torch.long), 0, torch.qint8)
            self.packed_weight = torch.ops.quantized.linear_prepack(quantized, None)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        rows = hidden_states.reshape(-1, self.in_features).float()
        row_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
        output = torch.ops.quantized.linear_dynamic(rows / row_scale, self.packed_weight, True).mul_(row_scale)
        if self.bias is not None:
            output.add_(self.bias)
        return output.reshape(*hidden_states.shape[:-1], self.out_features).to(hidden_states.dtype)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class BFloat16Linear(nn.Module):
    """`nn.Linear` with its weight held in bfloat16 (cast once, not on every call as autocast does); its input is cast
    to bfloat16 and its output stays bfloat16, as under autocast (the product accumulates in fp32 inside the
    kernel)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(torch.bfloat16))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(hidden_states.to(torch.bfloat16), self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


LINEAR_KERNELS = {"bf16": BFloat16Linear, "int_mm": Int8Linear, "fbgemm": FbgemmInt8Linear}
"""kernel -> the layer that replaces `nn.Linear` in a derived model."""
KERNEL_BACKEND = {"bf16": "bf16", "int_mm": "int8", "fbgemm": "int8"}
INT8_KERNELS = ("int_mm", "fbgemm")


def kernel_for_backend(backend):
    """The kernel (a key of LINEAR_KERNELS) that `backend` ("bf16" or "int8") runs on this CPU."""
    return int8_kernel() if backend == "int8" else backend


def derived_model(model, kernel):
    """A module tree like `model` (in eval mode) sharing every parameter and buffer with it, its `nn.Linear` layers
    replaced by `kernel`'s layer (a key of LINEAR_KERNELS, or a layer class taking the `nn.Linear`)."""
    layer = LINEAR_KERNELS[kernel] if isinstance(kernel, str) else kernel
    shared = {id(tensor): tensor for tensor in itertools.chain(model.parameters(), model.buffers())}
    derived = copy.deepcopy(model, memo=shared).eval()
    for module in list(derived.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, layer(child))
    return derived


def linear_shapes(model):
    """The model's linear layers as sorted ((in_features, out_features), count) pairs."""
    return tuple(sorted(Counter((module.in_features, module.out_features) for module in model.modules()
                                if isinstance(module, nn.Linear)).items()))


PROBE_ROWS = 256
"""Tokens per probed layer call: a batch of 8-16 tweets (the pipeline batches 32 by default)."""
PROBE_ROUNDS = 3


def time_kernel_against_fp32(kernel, shapes, rows=PROBE_ROWS, rounds=PROBE_ROUNDS):
    """(seconds of `kernel`, seconds of fp32) for one forward through layers of `shapes` over `rows` tokens each:
    random weights and activations, each distinct shape timed once per round and counted as often as the model has
    it, the two sides in turns, the best of `rounds` rounds each. Stops early when the kernel takes over four times
    fp32's time (a kernel without a fast path here can be 50x slower; no need to wait for it)."""
    generator = torch.Generator().manual_seed(0)
    sides = {"fp32": [], "kernel": []}
    for (in_features, out_features), count in shapes:
        linear = nn.Linear(in_features, out_features)
        activations = torch.randn(rows, in_features, generator=generator)
        sides["fp32"].append((count, linear, activations))
        sides["kernel"].append((count, LINEAR_KERNELS[kernel](linear), activations))

    def one_forward(side):
        seconds = 0.0
        for count, layer, activations in sides[side]:
            start = time.perf_counter()
            layer(activations)
            seconds += count * (time.perf_counter() - start)
        return seconds

    best = {"fp32": math.inf, "kernel": math.inf}
    with torch.inference_mode():
        for side in sides:  # warm-up: first calls allocate and pack
            one_forward(side)
        for _ in range(rounds):
            for side in best:
                best[side] = min(best[side], one_forward(side))
            if best["kernel"] > 4 * best["fp32"]:
                break
    return best["kernel"], best["fp32"]


_probe_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _cached_probe(kernel, shapes, threads):
    return time_kernel_against_fp32(kernel, shapes)


def probe(kernel, shapes):
    """`time_kernel_against_fp32(kernel, shapes)`, measured once per process (and thread count): concurrent first
    calls wait for one measurement rather than disturb each other's."""
    with _probe_lock:
        return _cached_probe(kernel, shapes, torch.get_num_threads())


def agreement_of(record, arithmetic):
    """(share of tweets that kept fp32's label, in words) for `arithmetic` in an agreement `record`; (None, why) when
    the record does not have it."""
    if not record:
        return None, "no agreement record"
    share = (record.get("agreement") or {}).get(arithmetic)
    if share is None:
        return None, f"no {arithmetic} in its agreement record"
    return share, f"{share:.1%} of {record['tweets']:,} {record['split']} tweets keep fp32's label"


def record_allows(record, arithmetic):
    """(whether "auto" may serve `arithmetic` by the model's agreement `record`, why)."""
    share, words = agreement_of(record, arithmetic)
    if share is None:
        allowed = arithmetic in UNRECORDED_ARITHMETIC
        return allowed, (f"{words}; {arithmetic} is served without one" if allowed
                         else f"{words}; {arithmetic} is served only where a record allows it")
    allowed = share >= AGREEMENT_FLOOR
    return allowed, f"{words} (its record{'' if allowed else f', below {AGREEMENT_FLOOR * 100:g} %'})"


def auto_backend(device, model=None):
    """What `backend="auto"` runs on `device` for `model`, and why, as (backend, reason): the one rule.

    On a GPU: bf16 where the model's agreement record allows it, else fp32. On a CPU: the kernels with a fast path
    here (`cpu_kernels`) that the record allows (`record_allows`) are each timed against fp32 on the model's own
    linear-layer shapes (`probe`, once per process), and the fastest that beats fp32 is served; fp32 when none is
    left. Without a model (no record, no shapes) the first allowed kernel is named. The reason gives the record and
    the probe's times."""
    record = getattr(getattr(model, "config", None), CONFIG_AGREEMENT_KEY, None)
    device_type = torch.device(device).type
    if device_type != "cpu":
        allowed, why = record_allows(record, "bf16") if record else (False, "no agreement record")
        return ("bf16", f"auto on {device_type}: bf16, {why}") if allowed else (
            "fp32", f"auto on {device_type}: fp32 ({why})")
    cpu = cpu_description(cpu_instruction_sets())
    verdicts = {kernel: record_allows(record, KERNEL_ARITHMETIC[kernel]) for kernel in cpu_kernels(
        cpu_instruction_sets())}
    refused = "; ".join(f"{kernel_name(kernel)} refused: {why}" for kernel, (allowed, why) in verdicts.items()
                        if not allowed)
    allowed = [kernel for kernel, (ok, _) in verdicts.items() if ok]
    if not allowed:
        return "fp32", f"auto on {cpu}: fp32 ({refused or 'no low-precision kernel is fast here'})"
    if model is None:
        return KERNEL_BACKEND[allowed[0]], f"auto on {cpu}: {kernel_name(allowed[0])}"
    shapes = linear_shapes(model)
    timings = {kernel: probe(kernel, shapes) for kernel in allowed}
    fastest = max(allowed, key=lambda kernel: timings[kernel][1] / timings[kernel][0])
    kernel_seconds, fp32_seconds = timings[fastest]
    timing = (f"{kernel_seconds * 1e3:.1f} ms against fp32's {fp32_seconds * 1e3:.1f} ms on this model's linear "
              f"layers")
    others = "".join(f"; {kernel_name(kernel)} {timings[kernel][1] / timings[kernel][0]:.2f}x" for kernel in allowed
                     if kernel != fastest)
    refused = f"; {refused}" if refused else ""
    if kernel_seconds >= fp32_seconds:
        return "fp32", f"auto on {cpu}: fp32, because {kernel_name(fastest)} lost its probe ({timing}{others}){refused}"
    return KERNEL_BACKEND[fastest], (f"auto on {cpu}: {kernel_name(fastest)}, {fp32_seconds / kernel_seconds:.2f}x "
                                     f"fp32 in its probe ({timing}{others}); {verdicts[fastest][1]}{refused}")


def kernel_name(kernel):
    """How a reason names a kernel: "bf16", "int8 (int_mm kernel)", "int8 (fbgemm kernel, 7-bit activations)"."""
    return {"bf16": "bf16", "int_mm": "int8 (int_mm kernel)",
            "fbgemm": "int8 (fbgemm kernel, 7-bit activations)"}[kernel]


def choose_backend(model, device, requested=None, autocast=False):
    """The backend ("fp32", "bf16" or "int8") a forward pass of `model` on `device` runs, and why, as (backend,
    reason): the one place that decides. `requested` is what the call or the pipeline asked for (None: the model
    config's `inference_backend`, "auto" unless exported with another); `autocast` whether the call asked for bf16
    autocast instead. A backend asked for is served as asked, and its reason says where the model's agreement record
    puts it below `AGREEMENT_FLOOR`."""
    if requested is None and autocast:
        return "fp32", "fp32 under bf16 autocast"
    source = "as asked"
    if requested is None:
        requested, source = configured_backend(model.config), "as the model's config sets it"
        if requested in CPU_ONLY_BACKENDS and torch.device(device).type != "cpu":
            return "fp32", f"fp32: the model's configured {requested} runs on CPUs only"
    if check_backend(requested) == "auto":
        return auto_backend(device, model)
    if requested == "fp32":
        return "fp32", f"fp32 ({source})"
    kernel = kernel_for_backend(requested)
    _, why = record_allows(getattr(model.config, CONFIG_AGREEMENT_KEY, None), KERNEL_ARITHMETIC[kernel])
    return requested, f"{requested} ({source}; {kernel} kernel; {why})"


def resolve_backend(backend, device, model=None):
    """The concrete backend ("fp32", "bf16" or "int8") that `backend` runs on `device` (for `model`: see
    `auto_backend`)."""
    return auto_backend(device, model)[0] if check_backend(backend) == "auto" else backend


def cpu_has_native_bf16():
    """Whether this CPU computes bfloat16 natively (otherwise bf16 on the CPU is much slower than fp32)."""
    isa = cpu_instruction_sets()
    return isa["amx"] or isa["avx512_bf16"]


def state_fingerprint(model):
    """Identity and version of every parameter and buffer of `model`: an optimizer step, `load_state_dict`, `.to()`
    or a replaced module changes it. (A derived model keeps the tensors it shares alive, so their addresses cannot be
    reused by new tensors while it exists.)"""
    return tuple(
        (name, tensor.data_ptr(), None if tensor.is_inference() else tensor._version, tensor.dtype, tensor.shape)
        for name, tensor in itertools.chain(model.named_parameters(remove_duplicate=False), model.named_buffers())
    )


_derived_models = weakref.WeakKeyDictionary()  # model -> {kernel: (state fingerprint, derived model)}
_derived_models_lock = threading.Lock()


def model_for_backend(model, backend):
    """The model that runs `backend` ("auto" is resolved for the model and its device, see `auto_backend`):
    `model` itself for "fp32"; otherwise its derived model for the backend's kernel on this CPU, made once per model
    and kernel and remade when its state changed. Thread-safe: concurrent first calls make one derived model."""
    backend = resolve_backend(backend, model.device, model)
    if backend == "fp32":
        return model
    if backend in CPU_ONLY_BACKENDS and model.device.type != "cpu":
        raise M2SAError(
            f"backend={backend!r} runs on the CPU only, but the model is on {model.device}; use backend='bf16' or "
            f"'fp32' there.", code="bad_option"
        )
    kernel = kernel_for_backend(backend)
    with _derived_models_lock:
        fingerprint = state_fingerprint(model)
        per_kernel = _derived_models.setdefault(model, {})
        cached = per_kernel.get(kernel)
        if cached is None or cached[0] != fingerprint:
            per_kernel.pop(kernel, None)  # free the stale one before building its successor
            cached = per_kernel[kernel] = (fingerprint, derived_model(model, kernel))
        return cached[1]

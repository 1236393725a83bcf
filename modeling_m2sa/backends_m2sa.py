"""Inference backends of the M2SA pipeline: how the arithmetic of a forward pass is done.

- "fp32": the model as it is (exact; what every other backend is measured against).
- "bf16": the linear layers' weights held once in bfloat16 and the forward run under bf16 autocast, so matrix
  products (linear layers and attention) run in bf16 on the CPU's AMX / AVX512-BF16 units or a GPU's tensor cores.
  Layer norms, softmax and the residual sums stay in fp32 (autocast keeps them there), which is what keeps the
  answers within bf16 rounding of fp32.
- "int8": the linear layers in int8 with per-output-feature weight scales and per-token activation scales, on the
  CPU, through the int8 kernel that is fast on this CPU (`int8_kernel`): `torch._int_mm` where the CPU has
  AVX512-VNNI, fbgemm's dynamic quantized linear on other x86 CPUs with AVX2 (7-bit activations there).
- "auto": the fastest of these that agrees with fp32 on the CPU it runs on: chosen by `cpu_rule` from the CPU's
  instruction sets, then checked once per process by a probe that times the chosen kernel against fp32 on the model's
  own linear-layer shapes and keeps fp32 where the kernel loses (see `auto_backend`); fp32 on GPUs.

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
CPU_ONLY_BACKENDS = ("int8",)


def check_backend(backend):
    """`backend` if it is one of BACKENDS; otherwise an M2SAError that names the choices."""
    if backend not in BACKENDS:
        raise M2SAError(
            f"backend must be one of {list(BACKENDS)}, got {backend!r}: 'auto' picks the fastest that agrees with "
            f"fp32 on this machine, 'fp32' runs the model as saved, 'bf16' its matrix products in bfloat16 (CPUs "
            f"with AMX or AVX512-BF16, GPUs), 'int8' its linear layers in int8 (CPUs).", code="invalid_option"
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


def cpu_rule(isa):
    """What `backend="auto"` runs on a CPU with the features `isa` (see `cpu_instruction_sets`), before the probe, as
    (backend, kernel, the CPU in words). Each line is a measurement of `benchmarks/bench_backends.py` or
    `benchmarks/bench_inference.py` (docs, Performance):

    - AMX (Xeon 4th generation and later): bf16, 1.95-2.6x fp32 with 99.9 % agreement, ahead of int8's 1.8x.
    - AVX512-VNNI without AMX (AMD EPYC Zen 4, Xeons 2nd-3rd generation): int8 through `torch._int_mm`, 2.8x fp32
      with 99.1 % agreement.
    - AVX2 without AVX512-VNNI: fp32. `torch._int_mm` has no fast path there (40x *slower* than fp32 on an AVX2-only
      EPYC) and fbgemm's int8 kernel, 1.1-1.4x faster, quantizes activations to 7 bits on such CPUs (its 8-bit mode
      overflows 16-bit sums there), which changed 1.7-2.9 % of a trained MiniLM model's labels on real tweets: below
      the 99 % agreement a default must keep. `backend="int8"` runs that kernel there for those who accept it.
    - anything else: fp32.
    """
    if isa["amx"]:
        return "bf16", "bf16", "a CPU with AMX"
    if isa["avx512_vnni"]:
        return "int8", "int_mm", "a CPU with AVX512-VNNI and no AMX"
    if isa["avx2"]:
        return "fp32", None, f"a CPU with {'AVX512 without VNNI' if isa['avx512'] else 'AVX2 and no AVX512'}"
    return "fp32", None, "a CPU without AVX2"


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
INT8_KERNELS = ("int_mm", "fbgemm")


def kernel_for_backend(backend):
    """The kernel (a key of LINEAR_KERNELS) that `backend` ("bf16" or "int8") runs on this CPU."""
    return int8_kernel() if backend == "int8" else backend


def derived_model(model, kernel):
    """A module tree like `model` (in eval mode) sharing every parameter and buffer with it, its `nn.Linear` layers
    replaced by `kernel`'s layer (see LINEAR_KERNELS)."""
    shared = {id(tensor): tensor for tensor in itertools.chain(model.parameters(), model.buffers())}
    derived = copy.deepcopy(model, memo=shared).eval()
    for module in list(derived.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, LINEAR_KERNELS[kernel](child))
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


def auto_backend(device, model=None):
    """What `backend="auto"` runs on `device` for `model`, and why, as (backend, reason).

    On a GPU: fp32 (pass backend="bf16" there). On a CPU: `cpu_rule` picks a backend from the instruction sets; when it
    is not fp32 and a model is given, its kernel is timed against fp32 on the model's own linear-layer shapes (`probe`,
    once per process) and fp32 is served instead if the kernel is not faster. The reason gives both times."""
    if torch.device(device).type != "cpu":
        return "fp32", f"auto on {torch.device(device).type}: fp32"
    backend, kernel, cpu = cpu_rule(cpu_instruction_sets())
    if backend == "fp32":
        return "fp32", f"auto on {cpu}: fp32"
    served = f"{backend} ({kernel} kernel)" if backend == "int8" else backend
    if model is None:
        return backend, f"auto on {cpu}: {served}"
    kernel_seconds, fp32_seconds = probe(kernel, linear_shapes(model))
    timing = f"{kernel_seconds * 1e3:.1f} ms against fp32's {fp32_seconds * 1e3:.1f} ms on this model's linear layers"
    if kernel_seconds >= fp32_seconds:
        return "fp32", f"auto on {cpu}: fp32, because {served} lost its probe ({timing})"
    return backend, f"auto on {cpu}: {served}, {fp32_seconds / kernel_seconds:.2f}x fp32 in its probe ({timing})"


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
            f"'fp32' there.", code="invalid_option"
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

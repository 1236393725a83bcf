"""Inference backends of the M2SA pipeline: how the arithmetic of a forward pass is done.

- "fp32": the model as it is (exact; what every other backend is measured against).
- "bf16": the linear layers' weights held once in bfloat16 and the forward run under bf16 autocast, so matrix
  products (linear layers and attention) run in bf16 on the CPU's AMX / AVX512-BF16 units or a GPU's tensor cores.
  Layer norms, softmax and the residual sums stay in fp32 (autocast keeps them there), which is what keeps the
  answers within bf16 rounding of fp32.
- "int8": the linear layers in int8 (`Int8Linear`: per-output-feature weight scales, per-token activation scales,
  int32 accumulation), on the CPU.
- "auto": the fastest of these that agrees with fp32 on the CPU it runs on, chosen from its instruction set (see
  `auto_backend`); fp32 on GPUs.

A non-fp32 backend runs a *derived* model: a second module tree that shares every parameter and buffer with the
model (embeddings, norms, convolutions, biases: no second copy) and holds only its own low-precision linear weights.
It is made on first use, once per model and backend even when requests arrive at once, and remade when any parameter
or buffer of the model changed (training steps, `load_state_dict`, `.to()`, `resize_token_embeddings`).
"""

import copy
import functools
import itertools
import threading
import weakref

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
    """The CPU features the backends depend on, as torch sees them: {"amx", "avx512_bf16", "avx512", "avx2"} -> bool.

    `torch.backends.cpu.get_cpu_capability()` (public) names the widest vector ISA torch's kernels use; the bf16 units
    are read from `torch.cpu`'s feature queries, False where this torch version has none."""
    capability = torch.backends.cpu.get_cpu_capability()
    has = lambda name: bool(getattr(torch.cpu, f"_is_{name}_supported", lambda: False)())  # noqa: E731
    return {"amx": has("amx_tile"), "avx512_bf16": has("avx512_bf16"), "avx512": capability.startswith("AVX512"),
            "avx2": capability == "AVX2" or capability.startswith("AVX512")}


def auto_backend(device):
    """What `backend="auto"` runs on `device`, and why, as (backend, reason).

    Measured with `benchmarks/bench_inference.py` (README, "Inference backends"): on a Xeon with AMX, bf16 weights ran
    `predict` about twice as fast as fp32 and faster than int8, with a seventh of int8's largest probability error;
    without AMX (AVX512-VNNI, AVX512-BF16 on AMD EPYC) int8 led. On a GPU, "auto" runs fp32 (pass backend="bf16"
    there)."""
    if torch.device(device).type != "cpu":
        return "fp32", f"auto on {torch.device(device).type}: fp32"
    isa = cpu_instruction_sets()
    if isa["amx"]:
        return "bf16", "auto on a CPU with AMX: bf16"
    if isa["avx2"]:
        return "int8", f"auto on a CPU with {'AVX512' if isa['avx512'] else 'AVX2'} and no AMX: int8"
    return "fp32", "auto on a CPU without AVX2: fp32"


def resolve_backend(backend, device):
    """The concrete backend ("fp32", "bf16" or "int8") that `backend` runs on `device`."""
    return auto_backend(device)[0] if check_backend(backend) == "auto" else backend


def cpu_has_native_bf16():
    """Whether this CPU computes bfloat16 natively (otherwise bf16 on the CPU is much slower than fp32)."""
    isa = cpu_instruction_sets()
    return isa["amx"] or isa["avx512_bf16"]


class Int8Linear(nn.Module):
    """`nn.Linear` in int8: symmetric per-output-feature weight scales, symmetric per-row (per-token) activation
    scales, int32 accumulation (`torch._int_mm`: VNNI / AMX / AVX2 integer kernels). Per-token activation scales are
    what keep the answers of trained text towers within quantization noise of fp32 (a single scale per batch lets one
    outlier token coarsen every other one). The bias is the fp32 layer's own tensor, not a copy."""

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


LOW_PRECISION_LINEAR = {"bf16": BFloat16Linear, "int8": Int8Linear}


def derived_model(model, backend):
    """A module tree like `model` (in eval mode) sharing every parameter and buffer with it, its `nn.Linear` layers
    replaced by `backend`'s low-precision layer."""
    shared = {id(tensor): tensor for tensor in itertools.chain(model.parameters(), model.buffers())}
    derived = copy.deepcopy(model, memo=shared).eval()
    for module in list(derived.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, LOW_PRECISION_LINEAR[backend](child))
    return derived


def state_fingerprint(model):
    """Identity and version of every parameter and buffer of `model`: an optimizer step, `load_state_dict`, `.to()`
    or a replaced module changes it. (A derived model keeps the tensors it shares alive, so their addresses cannot be
    reused by new tensors while it exists.)"""
    return tuple(
        (name, tensor.data_ptr(), None if tensor.is_inference() else tensor._version, tensor.dtype, tensor.shape)
        for name, tensor in itertools.chain(model.named_parameters(remove_duplicate=False), model.named_buffers())
    )


_derived_models = weakref.WeakKeyDictionary()  # model -> {backend: (state fingerprint, derived model)}
_derived_models_lock = threading.Lock()


def model_for_backend(model, backend):
    """The model that runs `backend` ("auto" is resolved for the model's device, see `auto_backend`):
    `model` itself for "fp32"; otherwise its derived model, made once per model and remade when its state changed.
    Thread-safe: concurrent first calls make one derived model."""
    backend = resolve_backend(backend, model.device)
    if backend == "fp32":
        return model
    if backend in CPU_ONLY_BACKENDS and model.device.type != "cpu":
        raise M2SAError(
            f"backend={backend!r} runs on the CPU only, but the model is on {model.device}; use backend='bf16' or "
            f"'fp32' there.", code="invalid_option"
        )
    with _derived_models_lock:
        fingerprint = state_fingerprint(model)
        per_backend = _derived_models.setdefault(model, {})
        cached = per_backend.get(backend)
        if cached is None or cached[0] != fingerprint:
            per_backend.pop(backend, None)  # free the stale one before building its successor
            cached = per_backend[backend] = (fingerprint, derived_model(model, backend))
        return cached[1]


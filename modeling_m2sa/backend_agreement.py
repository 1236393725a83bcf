"""The agreement record of a model: on a held-out split, how often each low-precision arithmetic the pipeline can
serve gives the label of the fp32 model. `backend="auto"` serves an arithmetic only where the record says at least
`AGREEMENT_FLOOR` (see `backends_m2sa`).

The record is computed in the arithmetic itself, not with the kernels: each linear layer is replaced by one that
rounds its operands as the kernel does (bf16 operands; int8 weights with per-output-feature scales and 8-bit
per-token or fbgemm's 7-bit activations) and sums the products in fp32. So it is the same on every machine, whatever
kernels that machine has a fast path for (a bf16 product is ~50x slower than fp32 on a CPU without AVX512-BF16, and
`torch._int_mm` 40x slower without VNNI), and it takes about fp32's time per arithmetic. bf16 runs under bf16
autocast, as the pipeline serves it (attention's products in bf16, norms and softmax in fp32).

Not saved with a model: `train.py`, the grid and `python -m modeling_m2sa.export --dataset ...` use it.
"""

import functools
from contextlib import nullcontext

import torch
from torch import nn

from .backends_m2sa import KERNEL_ARITHMETIC, derived_model

INT8_LEVELS = 127
"""Symmetric int8 levels either side of zero, of the weights and of `torch._int_mm`'s per-token activations."""
FBGEMM_LEVELS = 127
"""fbgemm's 7-bit activations (`reduce_range`): 0..127, asymmetric over the batch's range."""


class BFloat16Arithmetic(nn.Module):
    """The bf16 kernel's arithmetic: input, weight and bias rounded to bfloat16, products summed in fp32, the output
    rounded to bfloat16 (as `BFloat16Linear` gives it)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = linear.weight.detach().to(torch.bfloat16).float()
        self.bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16).float()

    def forward(self, hidden_states):
        with torch.autocast(hidden_states.device.type, enabled=False):
            output = nn.functional.linear(hidden_states.to(torch.bfloat16).float(), self.weight, self.bias)
        return output.to(torch.bfloat16)


class Int8Arithmetic(nn.Module):
    """An int8 kernel's arithmetic: weights rounded to int8 with one scale per output feature, activations rounded
    per token to 8 bits (`torch._int_mm`'s, `activation_bits=8`) or, after each token is divided by its largest
    magnitude, to fbgemm's 7-bit levels over the whole batch (`activation_bits=7`); products summed in fp32."""

    def __init__(self, linear: nn.Linear, activation_bits=8):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / INT8_LEVELS
        self.weight = torch.round(weight / scale) * scale
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        self.activation_bits = activation_bits

    def forward(self, hidden_states):
        rows = hidden_states.reshape(-1, hidden_states.shape[-1]).float()
        largest = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
        if self.activation_bits == 8:
            scale = largest / INT8_LEVELS
            rows = torch.round(rows / scale) * scale
        else:
            rows = self.fbgemm_rounding(rows / largest) * largest
        with torch.autocast(hidden_states.device.type, enabled=False):
            output = nn.functional.linear(rows, self.weight, self.bias)
        return output.reshape(*hidden_states.shape[:-1], -1).to(hidden_states.dtype)

    @staticmethod
    def fbgemm_rounding(rows):
        """`rows` as fbgemm's dynamic quantization rounds them: one scale and zero point for the whole batch, from its
        range (which always holds 0), onto 0..127."""
        low, high = rows.min().clamp(max=0), rows.max().clamp(min=0)
        scale = ((high - low) / FBGEMM_LEVELS).clamp(min=1e-12)
        zero_point = torch.round(-low / scale).clamp(0, FBGEMM_LEVELS)
        levels = (torch.round(rows / scale) + zero_point).clamp(0, FBGEMM_LEVELS)
        return (levels - zero_point) * scale


ARITHMETIC_LAYERS = {
    KERNEL_ARITHMETIC["bf16"]: BFloat16Arithmetic,
    KERNEL_ARITHMETIC["int_mm"]: functools.partial(Int8Arithmetic, activation_bits=8),
    KERNEL_ARITHMETIC["fbgemm"]: functools.partial(Int8Arithmetic, activation_bits=7),
}
"""The arithmetic a record measures -> the layer that computes it in place of `nn.Linear`."""


def arithmetic_models(model):
    """(arithmetic, a model sharing `model`'s weights that computes it, its autocast context factory) for each
    arithmetic of the record."""
    device_type = model.device.type
    for arithmetic, layer in ARITHMETIC_LAYERS.items():
        autocast = (functools.partial(torch.autocast, device_type, dtype=torch.bfloat16) if arithmetic == "bf16"
                    else nullcontext)
        yield arithmetic, derived_model(model, layer), autocast


def agreement_record(fp32_labels, labels_by_arithmetic, split):
    """The record: `{"split", "tweets", "agreement": {arithmetic: share of tweets with fp32's label}}`."""
    fp32_labels = torch.as_tensor(fp32_labels)
    return {"split": split, "tweets": len(fp32_labels),
            "agreement": {arithmetic: round(float((torch.as_tensor(labels) == fp32_labels).float().mean()), 4)
                          for arithmetic, labels in labels_by_arithmetic.items()}}


def measure_agreement(model, batches, split):
    """The agreement record of `model` on `batches` (model inputs, e.g. from `M2SAProcessor.encode_tweets`) of the
    held-out `split`, in one process."""
    model.eval()
    labels = {"fp32": []}
    with torch.inference_mode():
        batches = list(batches)
        for batch in batches:
            labels["fp32"].append(model(**batch).logits.argmax(dim=-1))
        for arithmetic, derived, autocast in arithmetic_models(model):
            with autocast():
                labels[arithmetic] = [derived(**batch).logits.argmax(dim=-1) for batch in batches]
    fp32 = torch.cat(labels.pop("fp32"))
    return agreement_record(fp32, {name: torch.cat(values) for name, values in labels.items()}, split)

"""The agreement record: each low-precision arithmetic computed without its kernel gives that kernel's answers, the
record counts agreement with fp32 right, and it is made where models are made (train.py, export) and kept through
save, load and export."""

import json

import pytest
import torch
from torch import nn
from transformers import AutoConfig

from modeling_m2sa import M2SAForSequenceClassification
from modeling_m2sa.backend_agreement import (
    BFloat16Arithmetic,
    Int8Arithmetic,
    agreement_record,
    arithmetic_models,
    measure_agreement,
)
from modeling_m2sa.backends_m2sa import BFloat16Linear, FbgemmInt8Linear, Int8Linear, fbgemm_available
from modeling_m2sa.export import main as export_main

TEXTS = ["Qué día tan bonito en la playa, me encanta!", "ok", "Das ist schrecklich und langweilig, wirklich",
         "I love this so much, best day ever! @user http://t.co/abc #happy"] * 4


def spread_linear(seed=0, in_features=96, out_features=64):
    """A linear layer and a batch of activations with outlier tokens, as trained towers have them."""
    generator = torch.Generator().manual_seed(seed)
    linear = nn.Linear(in_features, out_features)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(out_features, in_features, generator=generator) * 0.1)
    activations = torch.randn(2, 24, in_features, generator=generator)
    activations[0, 3] *= 20  # one loud token
    return linear, activations


def test_the_8_bit_arithmetic_is_torch_int_mms_answer():
    linear, activations = spread_linear()
    with torch.inference_mode():
        kernel = Int8Linear(linear)(activations)
        arithmetic = Int8Arithmetic(linear, activation_bits=8)(activations)
        exact = linear(activations)
    assert torch.allclose(arithmetic, kernel, atol=1e-4)
    assert (kernel - exact).abs().max() > 100 * (arithmetic - kernel).abs().max()  # the rounding is there


@pytest.mark.skipif(not fbgemm_available(), reason="this torch has no fbgemm quantized linear")
def test_the_7_bit_arithmetic_is_close_to_fbgemms_answer():
    linear, activations = spread_linear(1)
    with torch.inference_mode():
        kernel = FbgemmInt8Linear(linear)(activations)
        seven_bit = Int8Arithmetic(linear, activation_bits=7)(activations)
        eight_bit = Int8Arithmetic(linear, activation_bits=8)(activations)
        exact = linear(activations)
    # fbgemm's own choice of scale and zero point differs in detail; its rounding is the 7-bit one
    assert (seven_bit - kernel).abs().max() < (exact - kernel).abs().max() / 4
    assert (seven_bit - kernel).abs().max() < (eight_bit - kernel).abs().max() / 4


def test_the_bf16_arithmetic_is_the_bf16_kernels_answer_under_autocast():
    linear, activations = spread_linear(2)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        kernel = BFloat16Linear(linear)(activations)
        arithmetic = BFloat16Arithmetic(linear)(activations)
    assert arithmetic.dtype == kernel.dtype == torch.bfloat16
    assert torch.allclose(arithmetic.float(), kernel.float(), rtol=1e-2, atol=1e-2)


def test_a_model_computing_an_arithmetic_shares_every_weight_but_its_linear_layers(tiny_model_and_processor):
    model = tiny_model_and_processor[0]
    names = []
    for arithmetic, derived, _ in arithmetic_models(model):
        names.append(arithmetic)
        assert not any(isinstance(module, nn.Linear) for module in derived.modules())
        assert derived.m2sa.text_model.embeddings.word_embeddings.weight is \
            model.m2sa.text_model.embeddings.word_embeddings.weight
    assert names == ["bf16", "int8", "int8_7bit"]


def test_the_record_counts_the_tweets_that_keep_fp32s_label():
    record = agreement_record([0, 1, 2, 2, 1, 0, 0, 2], {"bf16": [0, 1, 2, 2, 1, 0, 0, 2],
                                                         "int8": [0, 1, 2, 1, 1, 0, 2, 2]}, "validation")
    assert record == {"split": "validation", "tweets": 8, "agreement": {"bf16": 1.0, "int8": 0.75}}


def test_measuring_a_model_compares_each_arithmetic_with_its_fp32_labels(tiny_model_and_processor, monkeypatch):
    model, processor = tiny_model_and_processor
    batches = [processor(text=TEXTS[:8]), processor(text=TEXTS[8:])]
    record = measure_agreement(model, batches, "validation")
    assert record["tweets"] == 16 and set(record["agreement"]) == {"bf16", "int8", "int8_7bit"}
    # an arithmetic that always answers "negative" keeps fp32's label exactly where fp32 says negative
    with torch.inference_mode():
        fp32 = torch.cat([model(**batch).logits.argmax(dim=-1) for batch in batches])

    class Negative(nn.Module):
        def __init__(self, linear):
            super().__init__()
            self.out_features = linear.out_features

        def forward(self, hidden_states):
            output = torch.zeros(*hidden_states.shape[:-1], self.out_features)
            if self.out_features == 3:
                output[..., 0] = 1.0
            return output

    monkeypatch.setattr("modeling_m2sa.backend_agreement.ARITHMETIC_LAYERS", {"negative": Negative})
    record = measure_agreement(model, batches, "validation")
    assert record["agreement"] == {"negative": round(float((fp32 == 0).float().mean()), 4)}


def test_the_record_round_trips_through_save_load_and_export(saved_tiny_model_dir, tmp_path, capsys):
    dataset = tmp_path / "tweets"
    dataset.mkdir()
    (dataset / "validation.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS))
    out_dir = tmp_path / "exported"
    export_main(["--model", str(saved_tiny_model_dir), "--out", str(out_dir), "--dataset", str(dataset),
                 "--dataset-config", "default"])
    printed = capsys.readouterr().out
    record = json.loads((out_dir / "config.json").read_text())["backend_agreement"]
    assert record["split"] == "validation" and record["tweets"] == len(TEXTS)
    assert f"agreement with fp32 on {len(TEXTS)} validation tweets: bf16 " in printed
    # the backend is the model's own unless asked: export no longer pins int8
    assert json.loads((out_dir / "config.json").read_text())["inference_backend"] == "auto"
    loaded = M2SAForSequenceClassification.from_pretrained(out_dir)
    assert loaded.config.backend_agreement == record
    assert AutoConfig.from_pretrained(out_dir, trust_remote_code=True).backend_agreement == record
    again = tmp_path / "again"
    export_main(["--model", str(out_dir), "--out", str(again), "--backend", "fp32"])
    kept = json.loads((again / "config.json").read_text())
    assert kept["backend_agreement"] == record and kept["inference_backend"] == "fp32"

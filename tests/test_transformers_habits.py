"""What a transformers user does with any CLIP or text classifier works on a saved M2SA model, through transformers'
public API only: processor kwargs, resize_token_embeddings, TorchAoConfig, problem_type and the pipeline's parameters."""

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForSequenceClassification, AutoProcessor, pipeline

from conftest import run_without_package

TEXTS = ["good day", "a much longer tweet with many more words in it than the first one", "meh"]


def images():
    noise = np.random.default_rng(0).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    return [Image.new("RGB", (40, 30), "red"), None, Image.fromarray(noise)]


@pytest.fixture(scope="module")
def saved(saved_tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(saved_tiny_model_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(saved_tiny_model_dir, trust_remote_code=True)
    return model, processor


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def test_the_clip_idiom_and_fixed_length_padding_give_the_same_logits(saved):
    model, processor = saved
    default = processor(text=TEXTS, images=images())
    clip_style = processor(text=TEXTS, images=images(), return_tensors="pt", padding=True)
    fixed = processor(images=images(), text=TEXTS, padding="max_length", truncation=True, max_length=48)
    assert torch.equal(default["input_ids"], clip_style["input_ids"])
    assert default["input_ids"].shape[1] < 48 == fixed["input_ids"].shape[1]
    assert default["has_image"].tolist() == [True, False, True]
    torch.testing.assert_close(logits(model, fixed), logits(model, default), atol=1e-5, rtol=1e-5)


def test_numpy_and_list_outputs_hold_the_same_values(saved):
    _, processor = saved
    as_torch = processor(text=TEXTS, images=images())
    as_numpy = processor(text=TEXTS, images=images(), return_tensors="np")
    as_lists = processor(text=TEXTS, images=images(), return_tensors=None)
    assert isinstance(as_numpy["pixel_values"], np.ndarray) and isinstance(as_numpy["input_ids"], np.ndarray)
    np.testing.assert_array_equal(as_numpy["pixel_values"], as_torch["pixel_values"].numpy())
    np.testing.assert_array_equal(as_numpy["has_image"], [True, False, True])
    assert as_lists["input_ids"] == as_torch["input_ids"].tolist() and as_lists["has_image"] == [True, False, True]
    np.testing.assert_array_equal(as_lists["pixel_values"][2], as_numpy["pixel_values"][2])


def test_modality_kwargs_dicts_and_tokenizer_kwargs_are_routed(saved):
    _, processor = saved
    batch = processor(text=TEXTS, text_kwargs={"padding": "max_length", "max_length": 20},
                      images_kwargs={"on_invalid_image": "raise"})
    assert batch["input_ids"].shape == (3, 20)
    without_mask = processor(text=TEXTS, return_attention_mask=False)
    assert "attention_mask" not in without_mask and without_mask["input_ids"].shape[0] == 3


def test_positional_order_is_transformers_5_and_the_old_order_warns(saved):
    _, processor = saved
    expected = processor(text=TEXTS, images=images())
    v5 = processor(images(), TEXTS)
    with pytest.warns(FutureWarning, match="old positional order"):
        old = processor(TEXTS, images())
    for batch in (v5, old):
        assert torch.equal(batch["input_ids"], expected["input_ids"])
        assert torch.equal(batch["pixel_values"], expected["pixel_values"])
    with pytest.raises(ValueError, match=r"first positional argument as images .* processor\(text=\.\.\.\)"):
        processor("just a tweet")


def test_an_unknown_kwarg_raises_naming_the_closest_valid_one(saved):
    _, processor = saved
    with pytest.raises(TypeError, match=r"'paddding' \(did you mean 'padding'\?\)"):
        processor(text=TEXTS, paddding=True)
    with pytest.raises(TypeError, match=r"'return_tensor' \(did you mean 'return_tensors'\?\)"):
        processor(text=TEXTS, return_tensor="pt")


def test_text_only_policy_in_the_call_warns_with_each_reason(saved):
    _, processor = saved
    with pytest.warns(UserWarning, match=r"1: image 1 could not be decoded .* \[undecodable\]"):
        batch = processor(text=["a", "b"], images=[None, b"not an image"], on_invalid_image="text_only")
    assert batch["has_image"].tolist() == [False, False]


def test_resize_token_embeddings_keeps_the_logits_of_existing_tokens(saved_tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(saved_tiny_model_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(saved_tiny_model_dir, trust_remote_code=True)
    batch = processor(text=TEXTS, images=images())
    before = logits(model, batch)
    vocabulary = model.get_input_embeddings().num_embeddings
    assert model.get_input_embeddings() is model.m2sa.text_model.embeddings.word_embeddings
    model.resize_token_embeddings(vocabulary + 7)
    assert model.get_input_embeddings().num_embeddings == vocabulary + 7
    assert model.config.text_config.vocab_size == vocabulary + 7
    torch.testing.assert_close(logits(model, batch), before, atol=1e-6, rtol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao is not installed (pip install torchao)")
def test_torchao_quantization_config_loads_and_answers_like_fp32(saved_tiny_model_dir, saved):
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    model, processor = saved
    quantized = AutoModelForSequenceClassification.from_pretrained(
        saved_tiny_model_dir, trust_remote_code=True, device_map="cpu",
        quantization_config=TorchAoConfig(Int8WeightOnlyConfig())).eval()
    query = quantized.m2sa.text_model.encoder.layer[0].attention.self.query.weight
    assert type(query).__module__.startswith("torchao")  # the weights really are int8 tensors
    batch = processor(text=TEXTS, images=images())
    reference, answer = logits(model, batch), logits(quantized, batch)
    assert not torch.equal(answer, reference)
    torch.testing.assert_close(answer, reference, atol=5e-3, rtol=0)
    assert torch.equal(answer.argmax(-1), reference.argmax(-1))


@pytest.fixture(scope="module")
def regression_dir(tiny_towers, tmp_path_factory):
    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

    directory = tmp_path_factory.mktemp("regression")
    model = M2SAForSequenceClassification.from_towers(
        tiny_towers["xlm-roberta"], tiny_towers["clip"], num_labels=1, problem_type="regression",
        id2label={0: "intensity"}, label2id={"intensity": 0})
    model.save_pretrained(directory)
    M2SAProcessor.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip"]).save_pretrained(directory)
    return directory


def test_the_loss_follows_problem_type(regression_dir, saved):
    model = AutoModelForSequenceClassification.from_pretrained(regression_dir, trust_remote_code=True).eval()
    _, processor = saved
    batch = processor(text=TEXTS, images=images())
    intensity = torch.tensor([0.8, -0.5, 0.0])
    output = model(**batch, labels=intensity)
    assert output.logits.shape == (3, 1)
    torch.testing.assert_close(output.loss, torch.nn.functional.mse_loss(output.logits.squeeze(-1), intensity))

    classifier, _ = saved
    classifier.config.problem_type = "multi_label_classification"
    try:
        targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
        output = classifier(**batch, labels=targets)
        torch.testing.assert_close(output.loss,
                                   torch.nn.functional.binary_cross_entropy_with_logits(output.logits, targets))
    finally:
        classifier.config.problem_type = "single_label_classification"
    labels = torch.tensor([2, 0, 1])
    output = classifier(**batch, labels=labels)
    torch.testing.assert_close(output.loss, torch.nn.functional.cross_entropy(output.logits, labels))


def test_a_regression_model_scores_raw_values_in_the_pipeline(regression_dir):
    pipe = pipeline(model=str(regression_dir), trust_remote_code=True, backend="fp32")
    model, processor = pipe.model, pipe.processor
    (result,) = pipe("good day")
    assert result["label"] == "intensity"
    assert result["score"] == pytest.approx(float(logits(model, processor(text=["good day"]))[0, 0]), abs=1e-6)


@pytest.fixture(scope="module")
def pipe(saved_tiny_model_dir):
    # fp32: these tests compare scores with the model's own logits to 1e-6 (the fast backends: test_backends.py)
    return pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True, backend="fp32")


def tweets(image_files):
    return [{"text": "good day", "image": image_files["red"]}, "a tweet with no image at all",
            {"text": "", "image": image_files["noise"]}, {"text": "x " * 60, "image": image_files["green"]}]


def test_preprocess_takes_one_tweet(pipe, image_files):
    one = pipe.preprocess({"text": "good day", "image": image_files["red"]})
    assert one["model_inputs"]["input_ids"].shape[0] == 1 and one["image_used"] is True
    assert one["model_inputs"]["has_image"].tolist() == [True]
    text_only = pipe.preprocess("good day")
    assert "pixel_values" not in text_only["model_inputs"] and text_only["image_used"] is False
    bad = pipe.preprocess({"text": "x", "image": image_files["corrupt"]}, on_invalid_image="text_only")
    assert (bad["image_used"], bad["image_error_code"]) == (False, "undecodable")


def test_workers_and_batch_sizes_give_the_same_results(pipe, image_files):
    reference = pipe(tweets(image_files), top_k=None)
    for kwargs in ({"num_workers": 2}, {"batch_size": 1}, {"batch_size": 3, "num_workers": 1}):
        results = pipe(tweets(image_files), top_k=None, **kwargs)
        for got, expected in zip(results, reference):
            assert [entry["label"] for entry in got] == [entry["label"] for entry in expected]
            assert [entry["score"] for entry in got] == pytest.approx([entry["score"] for entry in expected],
                                                                      abs=1e-5)


def test_tokenizer_kwargs_of_text_classification_are_honoured(pipe):
    model, processor = pipe.model, pipe.processor
    long_tweet = " ".join(f"word{index}" for index in range(80))
    truncated = torch.softmax(logits(model, processor(text=[long_tweet], max_length=8)), -1)[0]
    (result,) = pipe(long_tweet, truncation=True, max_length=8, top_k=1)
    assert result["score"] == pytest.approx(float(truncated.max()), abs=1e-6)
    (full,) = pipe(long_tweet, top_k=1)
    assert full["score"] != pytest.approx(result["score"], abs=1e-6)  # 8 tokens really are fewer than the default
    (padded,) = pipe("good day", padding="max_length", max_length=40, top_k=1)
    (dynamic,) = pipe("good day", top_k=1)
    assert padded["score"] == pytest.approx(dynamic["score"], abs=1e-5)
    with pytest.raises(TypeError, match="did you mean 'truncation'"):
        pipe("good day", truncaton=True)


def test_pipeline_parameters_at_construction(saved_tiny_model_dir, pipe, image_files):
    built = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True, batch_size=2, num_workers=1,
                     device="cpu", top_k=None)
    results = built(tweets(image_files))
    reference = pipe(tweets(image_files), top_k=None)
    assert [[entry["label"] for entry in ranked] for ranked in results] == [
        [entry["label"] for entry in ranked] for ranked in reference]


FRESH_PROCESS_HABITS = """
import json, warnings, torch
from PIL import Image
from transformers import AutoModelForSequenceClassification, AutoProcessor, pipeline
model_dir, out = sys.argv[1:3]
model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
texts, images = ["good day", "bad day"], [Image.new("RGB", (30, 30), "red"), None]
with torch.no_grad():
    dynamic = model(**processor(text=texts, images=images, return_tensors="pt", padding=True)).logits
    fixed = model(**processor(images, texts, padding="max_length", truncation=True, max_length=40)).logits
pipe = pipeline(model=model_dir, trust_remote_code=True)
json.dump({"max_difference": float((dynamic - fixed).abs().max()),
           "pipeline": pipe("good day", truncation=True, max_length=16, num_workers=0, batch_size=4),
           "trainable": all(p.requires_grad for p in model.parameters())}, open(out, "w"))
"""


def test_the_habits_work_in_a_fresh_process_without_this_package(saved_tiny_model_dir, tmp_path):
    out = tmp_path / "out.json"
    result = run_without_package(FRESH_PROCESS_HABITS, saved_tiny_model_dir, out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(out.read_text())
    assert answer["max_difference"] < 1e-5
    assert answer["trainable"] is True
    assert answer["pipeline"][0]["label"] in ("negative", "neutral", "positive")


def test_the_package_loads_lazily_and_its_first_name_registers_m2sa(saved_tiny_model_dir):
    """`import modeling_m2sa` loads nothing heavy; the first name used loads the code and registers the Auto classes
    and the pipeline task, so a saved model then loads without `trust_remote_code`."""
    import subprocess
    import sys

    child = (
        "import sys\n"
        "import modeling_m2sa\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
        "from modeling_m2sa import M2SAForSequenceClassification\n"
        "from transformers import AutoModelForSequenceClassification\n"
        "from transformers.pipelines import PIPELINE_REGISTRY\n"
        "model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1])\n"
        "print(type(model) is M2SAForSequenceClassification, 'm2sa-sentiment' in PIPELINE_REGISTRY.get_supported_tasks())\n"
    )
    result = subprocess.run([sys.executable, "-c", child, str(saved_tiny_model_dir)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["False False", "True True"]

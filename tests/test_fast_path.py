"""The CPU fast path (`backend="int8"`): the same answers as fp32 within quantization noise on every kind of tweet,
an export command whose output runs int8 without the package, and clear refusals. Nothing here is timed."""

import json
import textwrap

import pytest
import torch
from transformers import pipeline

from conftest import run_without_package
from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor, M2SASentimentPipeline, predict
from modeling_m2sa.export import main as export_main
from modeling_m2sa.pipeline_m2sa import Int8Linear, model_for_backend

# int8 rounds weights (per output feature) and activations (per token) to 1/127 of their range: probabilities
# move by well under this.
PROBABILITY_TOLERANCE = 0.02

TEXTS = ["Qué día tan bonito en la playa, me encanta!", "ok", "Das ist schrecklich und langweilig, wirklich",
         "kurz", "I love this so much, best day ever! @user http://t.co/abc #happy"]


def batches(image_files):
    red, noise, corrupt = image_files["red"], image_files["noise"], image_files["corrupt"]
    return {
        "text_only": (TEXTS, [None] * len(TEXTS), "raise"),
        "image_only": ([""] * 3, [red, noise, red], "raise"),
        "mixed": (TEXTS, [None, red, noise, None, red], "raise"),
        "invalid_images": (TEXTS[:4], [corrupt, red, None, corrupt], "text_only"),
    }


def assert_agrees(int8_results, fp32_results):
    assert len(int8_results) == len(fp32_results)
    for fast, exact in zip(int8_results, fp32_results):
        assert fast["image_used"] == exact["image_used"] and fast["image_error"] == exact["image_error"]
        for label, probability in exact["probabilities"].items():
            assert fast["probabilities"][label] == pytest.approx(probability, abs=PROBABILITY_TOLERANCE)
        ranked = sorted(exact["probabilities"].values(), reverse=True)
        if ranked[0] - ranked[1] > 2 * PROBABILITY_TOLERANCE:  # closer calls may flip within the tolerance
            assert fast["label"] == exact["label"]


@pytest.mark.parametrize("case", ["text_only", "image_only", "mixed", "invalid_images"])
def test_int8_predict_agrees_with_fp32(tiny_model_and_processor, image_files, case):
    model, processor = tiny_model_and_processor
    texts, images, policy = batches(image_files)[case]
    fp32 = predict(model, processor, texts, images, batch_size=2, on_invalid_image=policy)
    int8 = predict(model, processor, texts, images, batch_size=2, on_invalid_image=policy, backend="int8")
    assert_agrees(int8, fp32)
    assert int8 != fp32  # the int8 path really ran


def test_int8_model_is_quantized_once_and_requantized_after_training(tiny_model_and_processor):
    model, _ = tiny_model_and_processor
    int8_model = model_for_backend(model, "int8")
    assert model_for_backend(model, "int8") is int8_model
    quantized = [name for name, module in int8_model.named_modules() if isinstance(module, Int8Linear)]
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    assert quantized == linear  # every linear layer (towers, fusion, head) is int8 in the copy, none in the model
    weight = next(module.weight for module in model.modules() if isinstance(module, torch.nn.Linear))
    with torch.no_grad():
        weight.mul_(1.0)  # an in-place update, as an optimizer step makes: same values, new version
    assert model_for_backend(model, "int8") is not int8_model


def test_text_only_model_runs_int8(tiny_towers):
    model = M2SAForSequenceClassification.from_towers(tiny_towers["bert"]).eval()
    processor = M2SAProcessor.from_towers(tiny_towers["bert"])
    assert_agrees(predict(model, processor, TEXTS, batch_size=3, backend="int8"),
                  predict(model, processor, TEXTS, batch_size=3))


def test_pipeline_backend_at_construction_and_per_call(saved_tiny_model_dir, image_files):
    texts, images, _ = batches(image_files)["mixed"]
    tweets = [{"text": text, "image": image} for text, image in zip(texts, images)]
    fp32_pipe = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True)
    int8_pipe = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True, backend="int8")
    per_call = fp32_pipe(tweets, top_k=None, backend="int8")
    assert int8_pipe(tweets, top_k=None) == per_call
    assert fp32_pipe(tweets, top_k=None) != per_call


def test_bad_backends_are_refused(saved_tiny_model_dir, tiny_model_and_processor):
    pipe = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True)
    with pytest.raises(ValueError, match=r"backend must be one of \['fp32', 'int8'\], got 'onnx'"):
        pipe("hello", backend="onnx")
    with pytest.raises(ValueError, match="leave autocast_dtype unset"):
        pipe("hello", backend="int8", autocast_dtype="bf16")
    model, processor = tiny_model_and_processor
    with pytest.raises(ValueError, match="backend must be one of"):
        predict(model, processor, ["hello"], backend="int4")


def test_unknown_backend_in_config_is_refused_on_load(tiny_model_and_processor):
    model, _ = tiny_model_and_processor
    saved = {**model.config.to_dict(), "inference_backend": "int4"}  # a config.json written by other code
    with pytest.raises(ValueError, match=r"`inference_backend` must be one of \('fp32', 'int8'\), got 'int4'"):
        type(model.config).from_dict(saved)


EXPORTED_CHILD = textwrap.dedent(
    """
    import json, sys
    from transformers import pipeline

    model_dir, cases_path, out_path = sys.argv[1:4]
    pipe = pipeline(model=model_dir, trust_remote_code=True)
    out = {}
    for name, case in json.load(open(cases_path)).items():
        tweets = [{"text": text, "image": image} for text, image in zip(case["texts"], case["images"])]
        out[name] = pipe(tweets, top_k=None, batch_size=2, on_invalid_image=case["policy"])
    json.dump({"results": out, "config_backend": pipe.model.config.inference_backend}, open(out_path, "w"))
    """
)


def test_export_loads_without_the_package_and_answers_like_int8(saved_tiny_model_dir, image_files, tmp_path, capsys):
    out_dir = tmp_path / "exported"
    export_main(["--model", str(saved_tiny_model_dir), "--out", str(out_dir), "--backend", "int8"])
    assert "backend int8" in capsys.readouterr().out
    assert json.loads((out_dir / "config.json").read_text())["inference_backend"] == "int8"
    assert (out_dir / "pipeline_m2sa.py").is_file()

    cases = {name: {"texts": texts, "images": images, "policy": policy}
             for name, (texts, images, policy) in batches(image_files).items()}
    cases_path, out_path = tmp_path / "cases.json", tmp_path / "out.json"
    cases_path.write_text(json.dumps(cases))
    result = run_without_package(EXPORTED_CHILD, out_dir, cases_path, out_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    child = json.loads(out_path.read_text())
    assert child["config_backend"] == "int8"

    int8_pipe = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True, backend="int8")
    for name, case in cases.items():
        tweets = [{"text": text, "image": image} for text, image in zip(case["texts"], case["images"])]
        expected = int8_pipe(tweets, top_k=None, batch_size=2, on_invalid_image=case["policy"])
        for got, want in zip(child["results"][name], expected):
            assert [entry["label"] for entry in got] == [entry["label"] for entry in want]
            assert [entry["score"] for entry in got] == pytest.approx([entry["score"] for entry in want], abs=1e-6)
            assert [(e["image_used"], e["image_error"]) for e in got] == [(e["image_used"], e["image_error"])
                                                                          for e in want]

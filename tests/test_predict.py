"""predict(): batched, length-sorted inference that returns one result per tweet in input order."""

import io

import pytest
from PIL import Image

from modeling_m2sa import InvalidImageError, M2SAForSequenceClassification, M2SAProcessor, predict
from modeling_m2sa.backends_m2sa import cpu_has_native_bf16

TEXTS = ["ok", "this is a much longer tweet about the weather today", "", "kurz", "Me encanta esta canción, qué bonita."]


def sample_images():
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "green").save(buffer, format="JPEG")
    return [Image.new("RGB", (20, 20), "red"), None, buffer.getvalue(), None, Image.new("L", (8, 8), 90)]


def test_results_are_in_input_order_and_match_one_at_a_time(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    batched = predict(model, processor, TEXTS, sample_images(), batch_size=2)
    single = [predict(model, processor, [text], [image])[0] for text, image in zip(TEXTS, sample_images())]
    assert len(batched) == len(TEXTS)
    for got, expected in zip(batched, single):
        assert got["label"] == expected["label"]
        for label, probability in expected["probabilities"].items():
            assert got["probabilities"][label] == pytest.approx(probability, abs=1e-5)


def test_result_fields(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    results = predict(model, processor, TEXTS, sample_images())
    for result, image in zip(results, sample_images()):
        assert set(result["probabilities"]) == {"negative", "neutral", "positive"}
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert result["score"] == max(result["probabilities"].values())
        assert result["probabilities"][result["label"]] == result["score"]
        assert result["image_used"] is (image is not None)
        assert result["image_error"] is None


def test_bf16_autocast_runs_and_mostly_agrees(spread_model_and_processor):
    model, processor = spread_model_and_processor
    full = predict(model, processor, TEXTS, sample_images(), backend="fp32")
    if cpu_has_native_bf16():
        bf16 = predict(model, processor, TEXTS, sample_images(), autocast_dtype="bf16")
    else:
        with pytest.warns(UserWarning, match="no native bfloat16 arithmetic"):
            bf16 = predict(model, processor, TEXTS, sample_images(), autocast_dtype="bf16")
    assert bf16 != full  # bf16 arithmetic really ran
    # answers far from 1/3: the highest probability here was 0.86 to 0.997 over 12 random draws of the model
    assert max(max(result["probabilities"].values()) for result in full) > 0.7
    # bf16 moves a probability of this model by at most 0.007 over 12 draws (8 bits of mantissa in the products); a
    # wrong answer (an image left out, logits scaled) moves it by tenths.
    for a, b in zip(full, bf16):
        for label in a["probabilities"]:
            assert b["probabilities"][label] == pytest.approx(a["probabilities"][label], abs=0.02)
        ranked = sorted(a["probabilities"].values(), reverse=True)
        if ranked[0] - ranked[1] > 0.04:  # closer calls may flip within the tolerance
            assert b["label"] == a["label"]


def test_text_only_model_predicts_without_images(tiny_towers):
    model = M2SAForSequenceClassification.from_towers(tiny_towers["bert"])
    processor = M2SAProcessor.from_towers(tiny_towers["bert"])
    results = predict(model, processor, ["a", "b"], backend="fp32")
    expected = model.eval()(**processor(text=["a", "b"])).logits.softmax(-1)
    assert [r["probabilities"]["neutral"] for r in results] == pytest.approx(expected[:, 1].tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="text-only"):
        predict(model, processor, ["a"], [Image.new("RGB", (4, 4))])


def test_empty_text_without_image_is_refused_with_its_index(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    with pytest.raises(ValueError, match="Tweets 1, 2 have empty text and no image"):
        predict(model, processor, ["fine", "   ", ""])


def test_invalid_image_raises_or_falls_back_to_text(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    images = [None, b"\x00corrupt", Image.new("RGB", (4, 4))]
    with pytest.raises(InvalidImageError, match="image 1"):
        predict(model, processor, ["a", "b", "c"], images)
    results = predict(model, processor, ["a", "b", "c"], images, on_invalid_image="text_only")
    assert [r["image_used"] for r in results] == [False, False, True]
    assert "could not be decoded" in results[1]["image_error"]
    text_only = predict(model, processor, ["b"])[0]
    assert results[1]["probabilities"]["positive"] == pytest.approx(text_only["probabilities"]["positive"], abs=1e-5)


def test_bad_arguments_are_refused(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    with pytest.raises(ValueError, match="2 texts and 1 images"):
        predict(model, processor, ["a", "b"], [None])
    with pytest.raises(ValueError, match="autocast_dtype"):
        predict(model, processor, ["a"], autocast_dtype="int8")
    with pytest.raises(ValueError, match="batch_size"):
        predict(model, processor, ["a"], batch_size=0)
    assert predict(model, processor, []) == []


def test_each_image_is_decoded_once(tiny_model_and_processor, monkeypatch):
    from modeling_m2sa import processing_m2sa

    model, processor = tiny_model_and_processor
    decoded = []
    original = processing_m2sa.load_image

    def counting_load_image(image, index=None):
        decoded.append(index)
        return original(image, index)

    monkeypatch.setattr(processing_m2sa, "load_image", counting_load_image)
    images = sample_images()
    predict(model, processor, TEXTS, images, batch_size=2)
    assert sorted(decoded) == [index for index, image in enumerate(images) if image is not None]

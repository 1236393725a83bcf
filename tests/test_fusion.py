"""Fusion types (`M2SAConfig.fusion_type`): concat, gated, late, cross_attention. Each works with tweets with and
without images, image-only tweets, frozen towers and (where the type allows) cached features, and round-trips
bit-exact through save -> load in a process that cannot import this package."""

import json
import textwrap

import pytest
import torch
from PIL import Image

from conftest import run_without_package
from modeling_m2sa import M2SAConfig, M2SAForSequenceClassification, M2SAProcessor
from modeling_m2sa.configuration_m2sa import FUSION_CHOICES

TEXTS = ["I love this sunny day", "Das ist schrecklich", "", "Le train part à midi."]
HAS_IMAGE = [True, False, True, False]  # text + image, text only, image only, text only


def build(tiny_towers, fusion_type, **config):
    torch.manual_seed(0)
    model = M2SAForSequenceClassification.from_towers(
        tiny_towers["xlm-roberta"], tiny_towers["clip"], fusion_type=fusion_type, **config)
    return model.eval()


@pytest.fixture(scope="module")
def processor(tiny_towers):
    return M2SAProcessor.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip"])


COLOURS = ["red", "blue", "green", "yellow"]


def batch_of(processor, rows=range(len(TEXTS))):
    """The processor's inputs for these rows of TEXTS / HAS_IMAGE (row i's image is COLOURS[i])."""
    images = [Image.new("RGB", (40, 30), COLOURS[row]) if HAS_IMAGE[row] else None for row in rows]
    return processor(text=[TEXTS[row] for row in rows], images=images)


@pytest.mark.parametrize("fusion_type", FUSION_CHOICES)
def test_each_row_is_classified_as_if_alone(tiny_towers, processor, fusion_type):
    """Tweets with and without images and image-only tweets share a batch without affecting each other; the pixels
    of a row without an image are never read."""
    model = build(tiny_towers, fusion_type)
    batch = batch_of(processor)
    with torch.no_grad():
        logits = model(**batch).logits
        noisy = dict(batch, pixel_values=batch["pixel_values"].clone())
        noisy["pixel_values"][~batch["has_image"]] = torch.randn_like(noisy["pixel_values"][~batch["has_image"]])
        assert torch.equal(model(**noisy).logits, logits)
        for row in range(len(TEXTS)):
            alone = model(**batch_of(processor, [row])).logits[0]
            torch.testing.assert_close(alone, logits[row], atol=1e-5, rtol=1e-5)
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()


def test_gated_fusion_is_the_gated_multimodal_unit(tiny_towers, processor):
    model = build(tiny_towers, "gated", fusion_hidden_size=24)
    with torch.no_grad():
        outputs = model.m2sa(**batch_of(processor))
        fusion = model.m2sa.fusion
        t, v = outputs.text_embeds, outputs.image_embeds
        z = torch.sigmoid(fusion.gate(torch.cat([t, v], -1)))
        expected = z * torch.tanh(fusion.text_projection(t)) + (1 - z) * torch.tanh(fusion.image_projection(v))
    assert outputs.fused_embeds.shape == (4, 24)
    torch.testing.assert_close(outputs.fused_embeds, expected)


def test_late_fusion_uses_the_text_head_alone_without_an_image(tiny_towers, processor):
    model = build(tiny_towers, "late")
    with torch.no_grad():
        model.head.modality_weights.copy_(torch.tensor([0.3, -0.2]))
        outputs = model.m2sa(**batch_of(processor))
        logits = model(**batch_of(processor)).logits
        head = model.head
        text_logits = head.text_classifier(outputs.text_embeds)
        image_logits = head.image_classifier(outputs.image_embeds)
        weights = torch.tensor([0.3, -0.2]).softmax(0)
    for row, present in enumerate(HAS_IMAGE):
        expected = weights[0] * text_logits[row] + weights[1] * image_logits[row] if present else text_logits[row]
        torch.testing.assert_close(logits[row], expected)


def test_cross_attention_attends_to_patches_and_the_no_image_state(tiny_towers, processor):
    model = build(tiny_towers, "cross_attention", cross_attention_layers=2, cross_attention_heads=2)
    assert len(model.m2sa.fusion.layers) == 2
    batch = batch_of(processor)
    with torch.no_grad():
        outputs = model.m2sa(**batch)
        changed = dict(batch, pixel_values=torch.randn_like(batch["pixel_values"]))  # other images
        changed_outputs = model.m2sa(**changed)
    assert outputs.fused_embeds.shape == (4, model.config.fusion_hidden_size)
    assert not torch.allclose(changed_outputs.fused_embeds[0], outputs.fused_embeds[0])  # the image is read
    assert torch.equal(changed_outputs.fused_embeds[1], outputs.fused_embeds[1])  # no image: the null state only


@pytest.mark.parametrize("fusion_type", ["concat", "gated", "late"])
def test_cached_features_give_the_same_logits(tiny_towers, processor, fusion_type):
    model = build(tiny_towers, fusion_type)
    batch = batch_of(processor)
    with torch.no_grad():
        text_embeds = model.m2sa.get_text_features(batch["input_ids"], batch["attention_mask"])
        image_embeds = torch.zeros(4, model.config.vision_config.hidden_size)
        image_embeds[batch["has_image"]] = model.m2sa.get_image_features(batch["pixel_values"][batch["has_image"]])
        cached = model(text_embeds=text_embeds, image_embeds=image_embeds, has_image=batch["has_image"]).logits
        torch.testing.assert_close(cached, model(**batch).logits)


def test_cross_attention_refuses_cached_features_with_what_to_do(tiny_towers, processor):
    model = build(tiny_towers, "cross_attention")
    batch = batch_of(processor)
    text_embeds = model.m2sa.get_text_features(batch["input_ids"], batch["attention_mask"])
    with pytest.raises(ValueError, match="cannot use precomputed .* pass `input_ids` and `pixel_values`"):
        model(text_embeds=text_embeds, pixel_values=batch["pixel_values"], has_image=batch["has_image"])


@pytest.mark.parametrize("fusion_type", FUSION_CHOICES)
def test_frozen_towers_get_no_gradient_and_the_fusion_learns(tiny_towers, processor, fusion_type):
    model = build(tiny_towers, fusion_type)
    model.set_tower_freezing(freeze_text_model=True, freeze_vision_model=True)
    model.train()
    loss = model(**batch_of(processor), labels=torch.tensor([2, 0, 1, 1])).loss
    loss.backward()
    for name, parameter in model.named_parameters():
        if name.startswith(("m2sa.text_model.", "m2sa.vision_model.")):
            assert parameter.grad is None, name
    trained = {name for name, parameter in model.named_parameters() if parameter.grad is not None}
    assert "m2sa.missing_image_embedding" in trained
    assert any(name.startswith("head.") for name in trained)
    if fusion_type in ("gated", "cross_attention"):
        assert any(name.startswith("m2sa.fusion.") for name in trained)


def test_text_only_model_refuses_other_fusion_types(tiny_towers):
    text_config = M2SAForSequenceClassification.from_towers(tiny_towers["bert"]).config.text_config
    for fusion_type in ("gated", "late", "cross_attention"):
        with pytest.raises(ValueError, match=f"fusion_type='{fusion_type}' fuses text with images, but this model is "
                                             f"text-only .* uses fusion_type='concat'"):
            M2SAConfig(text_config=text_config, vision_config=None, fusion_type=fusion_type)
    assert M2SAConfig(text_config=text_config, fusion_type="concat").fusion_type == "concat"


def test_bad_fusion_settings_are_refused(tiny_towers):
    text_config = M2SAForSequenceClassification.from_towers(tiny_towers["bert"]).config.text_config
    vision = {"model_type": "clip_vision_model", "hidden_size": 32, "num_attention_heads": 2}
    with pytest.raises(ValueError, match="fusion_type"):
        M2SAConfig(text_config=text_config, vision_config=vision, fusion_type="attention")
    with pytest.raises(ValueError, match="must divide `fusion_hidden_size`"):
        M2SAConfig(text_config=text_config, vision_config=vision, fusion_type="cross_attention",
                   fusion_hidden_size=30, cross_attention_heads=4)
    with pytest.raises(ValueError, match="cross_attention_layers"):
        M2SAConfig(text_config=text_config, vision_config=vision, fusion_type="cross_attention",
                   cross_attention_layers=0)


CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModelForSequenceClassification, AutoProcessor
    from PIL import Image

    root, out_path = sys.argv[1:3]
    spec = json.load(open(f"{root}/inputs.json"))
    images = [Image.open(path) if path else None for path in spec["images"]]
    results = {}
    for fusion_type in spec["fusion_types"]:
        model_dir = f"{root}/{fusion_type}"
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
        with torch.no_grad():
            results[fusion_type] = model(**processor(text=spec["texts"], images=images)).logits
        assert model.config.fusion_type == fusion_type
    torch.save(results, out_path)
    """
)


def test_every_fusion_type_round_trips_bit_exact_in_a_fresh_process(tiny_towers, processor, tmp_path):
    image_paths = []
    for row, present in enumerate(HAS_IMAGE):
        path = ""
        if present:
            path = str(tmp_path / f"{row}.png")
            Image.new("RGB", (40, 30), COLOURS[row]).save(path)
        image_paths.append(path)
    (tmp_path / "inputs.json").write_text(json.dumps(
        {"texts": TEXTS, "images": image_paths, "fusion_types": list(FUSION_CHOICES)}))
    expected = {}
    for fusion_type in FUSION_CHOICES:
        model = build(tiny_towers, fusion_type, cross_attention_layers=2)
        model.save_pretrained(tmp_path / fusion_type)
        processor.save_pretrained(tmp_path / fusion_type)
        images = [Image.open(path) if path else None for path in image_paths]
        with torch.no_grad():
            expected[fusion_type] = model(**processor(text=TEXTS, images=images)).logits
    result = run_without_package(CHILD, tmp_path, tmp_path / "out.pt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = torch.load(tmp_path / "out.pt")
    for fusion_type in FUSION_CHOICES:
        assert torch.equal(loaded[fusion_type], expected[fusion_type]), fusion_type

"""M2SA model: towers, missing images, precomputed features, freezing and config validation."""

import json

import pytest
import torch
from PIL import Image

from modeling_m2sa import M2SAConfig, M2SAForSequenceClassification, M2SAModel, M2SAProcessor


def images(*colors):
    return [None if color is None else Image.new("RGB", (40, 40), color) for color in colors]


@pytest.mark.parametrize(
    "text_kind, vision_kind",
    [("xlm-roberta", "clip"), ("xlm-roberta", "clip-full"), ("bert", "dinov2"), ("xlm-roberta", "siglip"),
     ("bert", None)],
)
def test_forward_on_text_only_image_only_and_mixed_batches(tiny_towers, text_kind, vision_kind):
    vision_path = tiny_towers[vision_kind] if vision_kind else None
    model = M2SAForSequenceClassification.from_towers(tiny_towers[text_kind], vision_path).eval()
    processor = M2SAProcessor.from_towers(tiny_towers[text_kind], vision_path)
    batches = [processor(text=["good day", "bad day"])]
    if vision_kind:
        batches.append(processor(text=["", ""], images=images("red", "green")))  # image-only tweets
        batches.append(processor(text=["good", "bad", "meh"], images=images("red", None, "blue")))
    for batch in batches:
        labels = torch.tensor([0, 2, 1][: len(batch["input_ids"])])
        output = model(**batch, labels=labels)
        assert output.logits.shape == (len(batch["input_ids"]), 3)
        assert torch.isfinite(output.logits).all()
        expected_loss = -output.logits.log_softmax(-1).gather(1, labels[:, None]).mean()
        assert torch.allclose(output.loss, expected_loss)
    # Each tower reads its input: two texts, and a red and a green image-only tweet, get different answers. Over four
    # draws of the untrained towers, the two images' embeddings lie 1.2 to 2.8 apart (largest coordinate) and the
    # random head turns that into logits 0.05 to 0.26 apart; "good day" and "bad day" get logits 0.013 to 0.05 apart.
    with torch.no_grad():
        text_logits = model(**batches[0]).logits
        assert (text_logits[0] - text_logits[1]).abs().max() > 1e-3
        if vision_kind:
            image_only = model.m2sa(**batches[1])
            assert (image_only.image_embeds[0] - image_only.image_embeds[1]).abs().max() > 0.1
            image_logits = model(**batches[1]).logits
            assert (image_logits[0] - image_logits[1]).abs().max() > 1e-3


def test_missing_image_uses_the_learned_embedding(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    batch = processor(text=["one", "two"], images=images("red", None))
    features = model.m2sa(**batch)
    assert torch.equal(features.image_embeds[1], model.m2sa.missing_image_embedding.detach())
    assert not torch.equal(features.image_embeds[0], model.m2sa.missing_image_embedding.detach())
    # A tweet without an image gets the same prediction alone or next to tweets with images.
    alone = model(**processor(text=["two"])).logits
    assert torch.allclose(alone[0], model(**batch).logits[1], atol=1e-5)


def test_precomputed_image_and_text_embeds_equal_the_full_path(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    batch = processor(text=["one", "two", "three"], images=images("red", None, "blue"))
    with torch.no_grad():
        full = model(**batch).logits
        image_embeds = torch.zeros(3, model.config.vision_config.hidden_size)
        image_embeds[batch["has_image"]] = model.m2sa.get_image_features(batch["pixel_values"][batch["has_image"]])
        text_embeds = model.m2sa.get_text_features(batch["input_ids"], batch["attention_mask"])
        cached_image = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             has_image=batch["has_image"], image_embeds=image_embeds).logits
        cached_both = model(text_embeds=text_embeds, has_image=batch["has_image"], image_embeds=image_embeds).logits
    assert torch.equal(full, cached_image)
    assert torch.equal(full, cached_both)


def test_frozen_towers_do_not_change_after_an_optimizer_step(tiny_towers):
    model = M2SAForSequenceClassification.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip"])
    model.set_tower_freezing(freeze_vision_model=True)
    processor = M2SAProcessor.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip"])
    model.train()
    assert not model.m2sa.vision_model.training and model.m2sa.text_model.training
    before_vision = {k: v.clone() for k, v in model.m2sa.vision_model.state_dict().items()}
    before_text = {k: v.clone() for k, v in model.m2sa.text_model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = processor(text=["good", "bad"], images=images("red", "blue"))
    model(**batch, labels=torch.tensor([0, 2])).loss.backward()
    optimizer.step()
    assert all(torch.equal(before_vision[k], v) for k, v in model.m2sa.vision_model.state_dict().items())
    assert any(not torch.equal(before_text[k], v) for k, v in model.m2sa.text_model.state_dict().items())


def test_a_saved_model_loads_fully_trainable_whatever_was_frozen(tiny_towers, tmp_path):
    model = M2SAForSequenceClassification.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip"])
    model.set_tower_freezing(freeze_text_model=True, freeze_vision_model=True)
    assert not any(p.requires_grad for p in model.m2sa.text_model.parameters())
    model.save_pretrained(tmp_path)
    assert "freeze_text_model" not in json.loads((tmp_path / "config.json").read_text())
    loaded = M2SAForSequenceClassification.from_pretrained(tmp_path).train()
    assert all(p.requires_grad for p in loaded.parameters())
    assert loaded.m2sa.text_model.training and loaded.m2sa.vision_model.training


def test_an_old_checkpoint_with_freezing_in_its_config_loads_trainable(tiny_towers, tmp_path):
    M2SAForSequenceClassification.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip"]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "freeze_text_model": True,
                                                      "freeze_vision_model": True}))
    loaded = M2SAForSequenceClassification.from_pretrained(tmp_path)
    assert all(p.requires_grad for p in loaded.parameters())
    assert not hasattr(loaded.config, "freeze_text_model")


def test_default_text_pooling_needs_no_pooler_weights(tiny_towers):
    model = M2SAForSequenceClassification.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip"])
    assert model.config.text_pooling == "mean"
    assert not any(name.startswith("m2sa.text_model.pooler") for name in model.state_dict())


def test_text_only_model_refuses_images(tiny_towers):
    model = M2SAForSequenceClassification.from_towers(tiny_towers["bert"])
    processor = M2SAProcessor.from_towers(tiny_towers["bert"])
    with pytest.raises(ValueError, match="text-only"):
        model(**processor(text=["x"], images=images("red")))


def test_unknown_tower_type_is_refused():
    with pytest.raises(ValueError, match="Unknown text tower model_type 'not-a-model'"):
        M2SAConfig(text_config={"model_type": "not-a-model"})
    with pytest.raises(ValueError, match="Unknown vision tower model_type"):
        M2SAConfig(text_config={"model_type": "bert"}, vision_config={"model_type": "nope"})


def test_text_model_as_vision_tower_is_refused():
    with pytest.raises(ValueError, match="not an image encoder"):
        M2SAConfig(text_config={"model_type": "bert"}, vision_config={"model_type": "bert"})


def test_bad_pooling_and_fusion_are_refused():
    with pytest.raises(ValueError, match="text_pooling"):
        M2SAConfig(text_config={"model_type": "bert"}, text_pooling="max")
    with pytest.raises(ValueError, match="fusion_type"):
        M2SAConfig(text_config={"model_type": "bert"}, fusion_type="attention")


def test_full_clip_checkpoint_contributes_its_vision_weights(tiny_towers):
    from transformers import CLIPModel

    model = M2SAModel.from_towers(tiny_towers["xlm-roberta"], tiny_towers["clip-full"])
    clip = CLIPModel.from_pretrained(tiny_towers["clip-full"])
    assert model.config.vision_config.model_type == "clip_vision_model"
    for name, value in clip.vision_model.state_dict().items():
        assert torch.equal(model.vision_model.state_dict()[name], value)


@pytest.mark.parametrize("model_class", [M2SAForSequenceClassification, M2SAModel])
def test_misspelt_forward_argument_is_a_type_error_naming_it(tiny_model_and_processor, model_class):
    model, processor = tiny_model_and_processor
    batch = processor(text=["one"], images=images("red"))
    target = model if model_class is M2SAForSequenceClassification else model.m2sa
    with pytest.raises(TypeError, match="unexpected keyword argument 'pixel_value'"):
        target(input_ids=batch["input_ids"], pixel_value=batch["pixel_values"])


def test_hidden_states_and_attentions_come_from_the_towers(tiny_model_and_processor, saved_tiny_model_dir):
    _, processor = tiny_model_and_processor
    # Attention weights need eager attention (SDPA does not return them), as for any transformers model.
    model = M2SAForSequenceClassification.from_pretrained(saved_tiny_model_dir, attn_implementation="eager").eval()
    batch = processor(text=["one two three", "four"], images=images(None, "red"))
    with torch.no_grad():
        output = model(**batch, output_hidden_states=True, output_attentions=True)
        text_alone = model.m2sa.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                           output_hidden_states=True)
        vision_alone = model.m2sa.vision_model(pixel_values=batch["pixel_values"][1:], output_hidden_states=True)
    text_layers = model.config.text_config.num_hidden_layers
    assert len(output.text_model_output.hidden_states) == text_layers + 1
    assert all(torch.equal(a, b) for a, b in zip(output.text_model_output.hidden_states, text_alone.hidden_states))
    assert len(output.text_model_output.attentions) == text_layers
    assert output.text_model_output.attentions[0].shape[-2:] == (batch["input_ids"].shape[1],) * 2
    # The image tower runs on the tweets that have an image only: here the second one.
    assert output.vision_model_output.hidden_states[-1].shape[0] == 1
    assert torch.equal(output.vision_model_output.hidden_states[-1], vision_alone.hidden_states[-1])
    plain = model(**batch)
    assert plain.text_model_output.hidden_states is None and plain.vision_model_output.hidden_states is None


def test_return_dict_false_gives_the_same_values_as_a_tuple(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    batch = processor(text=["one", "two"], images=images("red", None))
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        as_dict = model(**batch, labels=labels)
        as_tuple = model(**batch, labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], as_dict.loss) and torch.equal(as_tuple[1], as_dict.logits)

"""train.py beyond the paper's head: fusion options, modality (image) dropout, LoRA towers, gradient checkpointing."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import (
    kill_training_after_its_first_checkpoint,
    logits_in_a_fresh_process,
    macro_f1_by_cue,
)
from m2sa_training.training.options import parse_options
from m2sa_training.training.run import prepare, run_training
from test_training import options_for

# LoRA on the tiny towers, with image dropout and saved adapters: learns on the demo set within 4 epochs.
LORA_RUN = ["--num-epochs", "4", "--batch-size", "16", "--modalities", "multimodal", "--max-length", "32",
            "--early-stopping-patience", "9", "--learning-rate", "3e-3", "--lora-r", "8", "--save-adapter",
            "--image-dropout", "0.25"]
TEXTS = ["I love this so much, best day ever!", "This is terrible, I hate waiting in line.",
         "Der Zug kommt um acht Uhr.", "我非常喜欢这个电影"]


@pytest.fixture(scope="session")
def variants_demo_dataset(tmp_path_factory):
    from dataset_script.demo import ensure_demo_dataset

    # Its own directory name: `datasets` caches local datasets by directory name and file mtimes.
    directory = tmp_path_factory.mktemp("demo-variants") / "m2sa-demo-variants"
    return str(ensure_demo_dataset(directory, num_train=240, num_eval=60))


def build(tiny_towers, *flags, modality="multimodal"):
    """The model and processor train.py builds for these flags, on the tiny XLM-R and CLIP towers (seed 0)."""
    from m2sa_training.training.model_setup import build_model_and_processor

    return build_model_and_processor(parse_options(list(flags)), modality, tiny_towers["xlm-roberta"],
                                     tiny_towers["clip"], seed=0)


def tweet_batch(processor):
    """Four tweets, the last without an image."""
    generator = np.random.default_rng(0)
    images = [Image.fromarray(generator.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in TEXTS[:-1]]
    return processor(text=TEXTS, images=[*images, None])


def randomize_lora_up_projections(model):
    """LoRA starts with B = 0 (the adapters add nothing); random B makes the adapters change the outputs."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


# --- options ---------------------------------------------------------------------------------------------------------


def test_new_options_come_from_yaml_and_flags_and_define_the_run(tmp_path):
    config = tmp_path / "variants.yaml"
    config.write_text("fusion: cross_attention\ncross_attention_layers: 2\nimage_dropout: 0.3\nlora_r: 8\n"
                      "lora_towers: text\nlora_target_modules: [query, value]\ngradient_checkpointing: true\n"
                      "save_adapter: true\n")
    options = parse_options(["--config", str(config), "--lora-alpha", "32", "--lora-dropout", "0.1"])
    expected = dict(fusion="cross_attention", cross_attention_layers=2, image_dropout=0.3, lora_r=8, lora_alpha=32,
                    lora_dropout=0.1, lora_towers="text", lora_target_modules=["query", "value"],
                    gradient_checkpointing=True, save_adapter=True)
    identity = options.run_identity()
    assert {name: identity[name] for name in expected} == expected
    assert {name: json.loads(options.to_json())[name] for name in expected} == expected  # saved in run_config.json
    config.write_text("lora_r: 8\nlora_target_modules: all-linear\n")  # one value for a list option
    assert parse_options(["--config", str(config)]).lora_target_modules == ["all-linear"]
    defaults = parse_options([])
    assert (defaults.fusion, defaults.cross_attention_layers, defaults.image_dropout, defaults.lora_r,
            defaults.lora_alpha, defaults.lora_dropout, defaults.lora_towers, defaults.lora_target_modules,
            defaults.gradient_checkpointing, defaults.save_adapter) == (
        "concat", 1, 0.0, 0, 16, 0.05, "both", ["all-linear"], False, False)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--image-dropout", "1"], r"--image-dropout is a probability in \[0, 1\), got 1.0"),
        (["--image-dropout", "-0.1"], r"--image-dropout is a probability in \[0, 1\), got -0.1"),
        (["--lora-dropout", "1.5"], r"--lora-dropout is a probability in \[0, 1\), got 1.5"),
        (["--lora-r", "-1"], "--lora-r must be 0 .* got -1"),
        (["--lora-r", "4", "--lora-alpha", "0"], "--lora-alpha must be positive, got 0"),
        (["--cross-attention-layers", "0"], "--cross-attention-layers must be at least 1, got 0"),
        (["--save-adapter"], "--save-adapter saves LoRA adapters, but LoRA is off; pass --lora-r"),
        (["--lora-r", "4", "--freeze-text-model"],
         "--freeze-text-model and LoRA on the text tower .*Drop --freeze-text-model"),
        (["--lora-r", "4", "--lora-towers", "vision", "--freeze-vision-model"],
         "--freeze-vision-model and LoRA on the vision tower"),
        (["--lora-r", "4", "--lora-towers", "vision", "--vision-model", "none"],
         "--lora-towers vision adapts the image tower, but --vision-model none has none"),
        (["--lora-target-modules", "all-linear", "query"], "mixes 'all-linear' with module names"),
    ],
)
def test_bad_variant_options_are_refused_naming_the_flag(flags, message):
    with pytest.raises(ValueError, match=message):
        parse_options(flags)


@pytest.mark.parametrize("yaml_line, message", [
    ("fusion: sum", r"--fusion must be one of \('concat', 'gated', 'late', 'cross_attention'\), got 'sum'"),
    ("lora_towers: all", r"--lora-towers must be one of \('text', 'vision', 'both'\), got 'all'"),
])
def test_bad_choices_in_yaml_are_refused(tmp_path, yaml_line, message):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_line + "\n")
    with pytest.raises(ValueError, match=message):
        parse_options(["--config", str(config)])


# --- fusion ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", ["concat", "gated", "late", "cross_attention"])
def test_fusion_options_reach_the_model_config(tiny_towers, fusion):
    model, _ = build(tiny_towers, "--fusion", fusion, "--cross-attention-layers", "2")
    assert (model.config.fusion_type, model.config.cross_attention_layers) == (fusion, 2)
    text_only, _ = build(tiny_towers, "--fusion", fusion, modality="text")
    assert text_only.config.vision_config is None and text_only.config.fusion_type == "concat"


def test_freezing_comes_from_the_training_options(tiny_towers):
    model, _ = build(tiny_towers, "--freeze-vision-model")
    model.train()
    vision, text = model.m2sa.vision_model, model.m2sa.text_model
    assert not any(parameter.requires_grad for parameter in vision.parameters()) and not vision.training
    assert all(parameter.requires_grad for parameter in text.parameters()) and text.training
    trainable, _ = build(tiny_towers)
    assert all(parameter.requires_grad for parameter in trainable.parameters())


def test_cross_attention_fusion_recomputes_frozen_tower_features(tiny_towers, caplog):
    from m2sa_training.training.loop import frozen_towers

    frozen = ["--freeze-text-model", "--freeze-vision-model"]
    concat, _ = build(tiny_towers, *frozen)
    assert frozen_towers(parse_options(frozen), concat, "multimodal") == {"text", "vision"}
    assert frozen_towers(parse_options(frozen[1:]), concat, "text") == set()  # a text-only run reads no images
    cross_attention = [*frozen, "--fusion", "cross_attention"]
    cross, _ = build(tiny_towers, *cross_attention)
    with caplog.at_level(logging.INFO, logger="m2sa_training"):
        assert frozen_towers(parse_options(cross_attention), cross, "multimodal") == set()
    assert [record.getMessage() for record in caplog.records] == [
        "Features of the frozen text and vision tower(s) are recomputed every step: cross_attention fusion reads their "
        "token and patch states, which the cache (pooled features) does not hold."]


def weights_at_the_start_of_each_run(monkeypatch):
    """The state dict of every model train.py builds, as built (before training), in a list filled as runs start."""
    import m2sa_training.training.run

    build_model_and_processor, starts = m2sa_training.training.run.build_model_and_processor, []

    def recording_build(*args, **kwargs):
        model, processor = build_model_and_processor(*args, **kwargs)
        starts.append({name: value.detach().clone() for name, value in model.state_dict().items()})
        return model, processor

    monkeypatch.setattr(m2sa_training.training.run, "build_model_and_processor", recording_build)
    return starts


def test_cross_attention_run_with_a_frozen_tower_trains_without_a_feature_cache(variants_demo_dataset, tmp_path,
                                                                                monkeypatch):
    options = options_for(variants_demo_dataset, tmp_path, "--fusion", "cross_attention", "--freeze-vision-model",
                          "--num-epochs", "1", "--max-train-samples", "64")
    starts = weights_at_the_start_of_each_run(monkeypatch)
    run_training(options)  # cached features would make the cross-attention forward raise
    assert not (tmp_path / "cache" / "features").exists()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["fusion_type"] == "cross_attention"
    # Training moved every weight matrix of the cross-attention fusion and none of the frozen image tower.
    (start,) = starts
    trained = load_file(tmp_path / "out" / "model.safetensors")
    fusion = [name for name in trained if name.startswith("m2sa.fusion.") and name.endswith(".weight")]
    vision = [name for name in trained if name.startswith("m2sa.vision_model.")]
    assert fusion and vision
    assert [name for name in fusion if torch.equal(trained[name], start[name])] == []
    assert [name for name in vision if not torch.equal(trained[name], start[name])] == []


# --- modality dropout ------------------------------------------------------------------------------------------------


def test_image_dropout_depends_only_on_seed_epoch_and_row():
    from m2sa_training.training.modality_dropout import drop_images, dropped_images

    rows = list(range(4000))
    dropped = dropped_images(rows, seed=42, epoch=0, probability=0.3)
    assert abs(dropped.float().mean().item() - 0.3) < 0.03
    # Any batching and order of the rows (workers, processes, shuffling) gives each row the same decision.
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
    in_batches = torch.cat([dropped_images(order[start:start + 7], 42, 0, 0.3) for start in range(0, len(rows), 7)])
    assert torch.equal(in_batches, dropped[order])
    assert not torch.equal(dropped_images(rows, 42, 1, 0.3), dropped)  # a new draw every epoch
    assert not torch.equal(dropped_images(rows, 7, 0, 0.3), dropped)  # and for every seed
    assert not dropped_images(rows, 42, 0, 0.0).any()
    has_image = torch.tensor([True, True, False, False])
    kept = drop_images(has_image, [0, 1, 2, 3], 42, 0, 0.3)
    assert torch.equal(kept, has_image & ~dropped[:4]) and not kept[2:].any()


def test_image_dropout_is_used_by_the_multimodal_model_only(caplog):
    from m2sa_training.training.modality_dropout import image_dropout_for

    options = parse_options(["--image-dropout", "0.4"])
    with caplog.at_level(logging.INFO, logger="m2sa_training"):
        probabilities = {modality: image_dropout_for(options, modality) for modality in ("multimodal", "text", "image")}
    assert probabilities == {"multimodal": 0.4, "text": 0.0, "image": 0.0}
    assert len(caplog.records) == 2 and all("is not used by the" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("flags", [[], ["--freeze-vision-model"], ["--dataloader-num-workers", "2"]],
                         ids=["recomputed", "feature-cache", "two-workers"])
def test_image_dropout_hides_images_in_training_only(variants_demo_dataset, tmp_path, monkeypatch, flags):
    from m2sa_training.training.modality_dropout import dropped_images
    from modeling_m2sa import M2SAForSequenceClassification

    calls = []  # (training?, has_image) of every classifier forward
    forward = M2SAForSequenceClassification.forward

    def recording_forward(self, *args, **kwargs):
        calls.append((self.training, kwargs["has_image"].cpu().clone()))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(M2SAForSequenceClassification, "forward", recording_forward)
    options = options_for(variants_demo_dataset, tmp_path, "--image-dropout", "0.5", *flags)
    _, _, splits = prepare(options)
    run_training(options)

    with_image = {name: [image is not None for image in split["image"]] for name, split in splits.items()}
    train_rows = range(len(with_image["train"]))
    expected_train = [sum(with_image["train"][row] and not dropped for row, dropped in
                          zip(train_rows, dropped_images(train_rows, seed=42, epoch=epoch, probability=0.5).tolist()))
                      for epoch in range(2)]
    assert 0 < expected_train[0] < sum(with_image["train"])
    seen_per_epoch = []
    for (training, has_image), previous in zip(calls, [(False, None), *calls]):
        if training and not previous[0]:
            seen_per_epoch.append(0)
        if training:
            seen_per_epoch[-1] += int(has_image.sum())
    assert seen_per_epoch == expected_train
    # Evaluation (validation after each epoch, then validation and test of the best model, then the agreement record:
    # validation in each of its three arithmetics) sees every image.
    evaluated = sum(int(has_image.sum()) for training, has_image in calls if not training)
    assert evaluated == (3 + 3) * sum(with_image["validation"]) + sum(with_image["test"])


# --- LoRA ------------------------------------------------------------------------------------------------------------


def tower_parameter_counts(model, rank):
    """Per tower: (LoRA parameters of rank `rank` on every Linear layer, all parameters)."""
    counts = {}
    for tower_name in ("text", "vision"):
        tower = getattr(model.m2sa, f"{tower_name}_model")
        if tower is not None:
            lora = sum(rank * (module.in_features + module.out_features) for module in tower.modules()
                       if isinstance(module, torch.nn.Linear))
            counts[tower_name] = (lora, sum(parameter.numel() for parameter in tower.parameters()))
    return counts


@pytest.mark.parametrize("lora_towers, modality, adapted", [
    ("both", "multimodal", {"text", "vision"}),
    ("text", "multimodal", {"text"}),
    ("vision", "multimodal", {"vision"}),
    ("both", "text", {"text"}),
])
def test_lora_trains_adapters_head_fusion_and_no_image_embedding(tiny_towers, lora_towers, modality, adapted):
    plain, _ = build(tiny_towers, "--fusion", "gated", modality=modality)
    outside_towers = {name: parameter.numel() for name, parameter in plain.named_parameters()
                      if not name.startswith(("m2sa.text_model.", "m2sa.vision_model."))}
    expected = sum(outside_towers.values()) + sum(
        lora if tower in adapted else total for tower, (lora, total) in tower_parameter_counts(plain, 4).items())

    model, _ = build(tiny_towers, "--fusion", "gated", "--lora-r", "4", "--lora-towers", lora_towers,
                     modality=modality)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad) == expected
    assert set(outside_towers) <= trainable  # head, fusion and "no image" embedding train fully
    if modality == "multimodal":
        assert {"m2sa.missing_image_embedding", "m2sa.fusion.gate.weight"} <= set(outside_towers)
    for tower in adapted:  # an adapted tower trains its adapters only
        assert all("lora_" in name for name in trainable if name.startswith(f"m2sa.{tower}_model."))


def test_lora_target_modules_must_name_layers_of_every_adapted_tower(tiny_towers):
    with pytest.raises(ValueError, match=r"--lora-target-modules query value names no layer of the vision tower "
                                         r"\(clip_vision_model\), whose Linear layers are \['fc1', 'fc2', 'k_proj'"):
        build(tiny_towers, "--lora-r", "4", "--lora-target-modules", "query", "value")
    model, _ = build(tiny_towers, "--lora-r", "4", "--lora-target-modules", "query", "value", "q_proj")
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if ".lora_A" in name}
    assert adapted == {"query", "value", "q_proj"}


def test_merged_lora_model_gives_the_logits_of_the_unmerged_one(tiny_towers, tmp_path):
    from m2sa_training.training.lora import save_exported_model
    from modeling_m2sa import M2SAForSequenceClassification

    flags = ["--lora-r", "4", "--lora-dropout", "0.1"]
    model, processor = build(tiny_towers, *flags)
    randomize_lora_up_projections(model)
    plain, _ = build(tiny_towers)
    batch = tweet_batch(processor)
    with torch.no_grad():
        unmerged = model.eval()(**batch).logits
        save_exported_model(model, tmp_path, parse_options(flags))
        exported = M2SAForSequenceClassification.from_pretrained(tmp_path).eval()
        merged = exported(**batch).logits
        assert torch.allclose(merged, unmerged, atol=1e-5)
        assert (merged - plain.eval()(**batch).logits).abs().max() > 1e-3  # the adapters change the predictions
        assert torch.equal(model(**batch).logits, unmerged)  # the training model keeps its adapters unmerged
    saved_names = load_file(tmp_path / "model.safetensors").keys()
    assert saved_names == plain.state_dict().keys()  # a plain M2SA model
    assert not (tmp_path / "adapter_text").exists()  # adapters only with --save-adapter


@pytest.fixture(scope="session")
def lora_run(variants_demo_dataset, tmp_path_factory):
    """A LoRA run (with image dropout and --save-adapter) on the demo set: (flags without --output-dir, outcome)."""
    tmp_path = tmp_path_factory.mktemp("lora-run")
    flags = ["--dataset", variants_demo_dataset, "--cache-dir", str(tmp_path / "cache"), *LORA_RUN]
    return flags, run_training(parse_options([*flags, "--output-dir", str(tmp_path / "out")]))


def test_lora_run_learns_beyond_the_majority_baseline(lora_run, variants_demo_dataset):
    import datasets

    _, outcome = lora_run
    test = outcome["summary"]["test"]
    majority = test["majority"]["overall"]["macro_f1"]["mean"]
    assert majority < 0.25
    assert test["multimodal"]["overall"]["macro_f1"]["mean"] > majority + 0.2
    # It reads the images: withheld, test macro-F1 falls (seeds 42, 0, 1, 2, 3: from 0.47, 0.50, 0.43, 0.49, 0.50 to
    # 0.15 to 0.18, margins 0.28 to 0.35); a model that ignores images loses nothing.
    rows = datasets.load_dataset(variants_demo_dataset, "all", split="test")
    scores = macro_f1_by_cue(outcome["output_dir"], rows)
    assert scores["both"] == pytest.approx(test["multimodal"]["overall"]["macro_f1"]["mean"], abs=0.02)
    assert scores["both"] > scores["without_images"] + 0.2
    card = (outcome["output_dir"] / "README.md").read_text()
    assert "The text and vision tower(s) were fine-tuned with LoRA (r=8" in card and "without `peft`" in card


def test_lora_export_is_a_plain_model_that_runs_without_peft(lora_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModel

    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

    output_dir = lora_run[1]["output_dir"]
    exported = M2SAForSequenceClassification.from_pretrained(output_dir).eval()
    assert load_file(output_dir / "model.safetensors").keys() == exported.state_dict().keys()

    # The saved adapters, applied to the starting towers and merged, give the exported towers.
    for tower_name, tower_dir in (("text", "text-tower"), ("vision", "vision-tower")):
        adapter_dir = output_dir / f"adapter_{tower_name}"
        assert json.loads((adapter_dir / "adapter_config.json").read_text())["r"] == 8
        start = AutoModel.from_pretrained(output_dir / "towers" / "seed42" / tower_dir)
        start_weights = {name: value.clone() for name, value in start.state_dict().items()}
        merged = PeftModel.from_pretrained(start, adapter_dir).merge_and_unload().state_dict()  # changes `start`
        exported_tower = getattr(exported.m2sa, f"{tower_name}_model")
        for name, value in exported_tower.state_dict().items():
            assert torch.allclose(merged[name], value, atol=1e-6), (tower_name, name)
        # Training changed the Linear weights (through their adapters) and nothing else of the tower.
        changed = {name for name, value in exported_tower.state_dict().items()
                   if not torch.equal(start_weights[name], value)}
        assert changed == {f"{name}.weight" for name, module in exported_tower.named_modules()
                           if isinstance(module, torch.nn.Linear)}

    images = []
    for index in range(3):
        path = tmp_path / f"{index}.png"
        Image.fromarray(np.full((40, 40, 3), 60 * index, dtype=np.uint8)).save(path)
        images.append(str(path))
    # importing peft fails in the child: the exported model must not need it
    logits = logits_in_a_fresh_process(output_dir, TEXTS, [*images, ""], tmp_path, also_block=["peft"])
    processor = M2SAProcessor.from_pretrained(output_dir)
    with torch.no_grad():
        expected = exported(**processor(text=TEXTS, images=[*map(Image.open, images), None])).logits
    assert torch.equal(expected, logits)


def test_lora_resume_after_a_kill_gives_the_same_result(lora_run, tmp_path):
    flags, uninterrupted = lora_run
    killed_dir = tmp_path / "killed"
    run_dir = kill_training_after_its_first_checkpoint(flags, killed_dir)
    assert not (run_dir / "checkpoints" / "epoch-4").exists(), "the run was not interrupted"
    checkpoint_weights = load_file(run_dir / "checkpoints" / "epoch-1" / "model.safetensors")
    assert any(".lora_A." in name for name in checkpoint_weights)  # checkpoints hold the unmerged adapters

    resumed = run_training(parse_options([*flags, "--output-dir", str(killed_dir), "--resume-from-checkpoint", "latest"]))
    assert resumed["summary"] == uninterrupted["summary"]
    straight_weights = load_file(uninterrupted["output_dir"] / "model.safetensors")
    resumed_weights = load_file(killed_dir / "model.safetensors")
    assert all(torch.equal(straight_weights[name], resumed_weights[name]) for name in straight_weights)


# --- gradient checkpointing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [[], ["--lora-r", "4"]], ids=["full-fine-tuning", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_towers, monkeypatch, variant):
    import transformers.modeling_utils
    from transformers.modeling_layers import GradientCheckpointingLayer

    checkpoint = transformers.modeling_utils.checkpoint
    checkpointed = []

    def counting_checkpoint(*args, **kwargs):
        checkpointed.append(kwargs)
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", counting_checkpoint)
    gradients = {}
    for flags in ([], ["--gradient-checkpointing"]):
        model, processor = build(tiny_towers, *variant, *flags)
        randomize_lora_up_projections(model)
        torch.manual_seed(0)  # the same dropout masks: checkpointing replays the random state it saw
        model.train()(**tweet_batch(processor), labels=torch.tensor([2, 0, 1, 2])).loss.backward()
        gradients[bool(flags)] = {name: parameter.grad for name, parameter in model.named_parameters()
                                  if parameter.requires_grad}
    layers = sum(isinstance(module, GradientCheckpointingLayer) for module in model.modules())
    assert layers == 4 and len(checkpointed) == layers  # every tower layer of the one forward pass, non-reentrant
    assert all(kwargs == {"use_reentrant": False} for kwargs in checkpointed)
    assert gradients[True].keys() == gradients[False].keys()
    assert any(".lora_A." in name for name in gradients[True]) == bool(variant)
    for name, gradient in gradients[False].items():
        assert gradient.abs().max() > 0, name
        assert torch.allclose(gradients[True][name], gradient, rtol=1e-5, atol=1e-7), name


def test_gradient_checkpointing_run_trains_the_same_model(lora_run, tmp_path, monkeypatch):
    import transformers.modeling_utils

    flags, without = lora_run
    checkpoint, checkpointed = transformers.modeling_utils.checkpoint, []

    def counting_checkpoint(*args, **kwargs):
        checkpointed.append(kwargs)
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", counting_checkpoint)
    with_checkpointing = run_training(parse_options([*flags, "--gradient-checkpointing",
                                                     "--output-dir", str(tmp_path / "out")]))
    # The run recomputed its tower layers in the backward pass (an ignored flag would train the same model too).
    assert checkpointed and all(kwargs == {"use_reentrant": False} for kwargs in checkpointed)
    assert with_checkpointing["summary"] == without["summary"]
    expected = load_file(without["output_dir"] / "model.safetensors")
    trained = load_file(tmp_path / "out" / "model.safetensors")
    for name, value in expected.items():
        assert torch.allclose(trained[name], value, atol=1e-6), name


@pytest.mark.parametrize("optim, implementation", [("adamw_torch_fused", "fused"), ("adamw_torch_foreach", "foreach")])
def test_adamw_implementations_train_the_same_model(lora_run, tmp_path, monkeypatch, optim, implementation):
    flags, default = lora_run
    made = []

    class RecordingAdamW(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    outcome = run_training(parse_options([*flags, "--optim", optim, "--output-dir", str(tmp_path / "out")]))
    assert made and all(kwargs.get(implementation) is True for kwargs in made)  # the option reached the optimizer
    test = outcome["summary"]["test"]
    assert test["multimodal"]["overall"]["macro_f1"]["mean"] > test["majority"]["overall"]["macro_f1"]["mean"] + 0.2
    expected = load_file(default["output_dir"] / "model.safetensors")
    trained = load_file(tmp_path / "out" / "model.safetensors")
    for name, value in expected.items():  # the same update, summed in another order
        assert torch.allclose(trained[name], value, atol=1e-4), name

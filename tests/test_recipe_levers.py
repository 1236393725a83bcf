"""The training levers of a recipe: layer-wise learning-rate decay, the learning-rate schedule, frozen word embeddings,
label smoothing and a text tower's input prefix; how runs saved before an option existed compare; and a run with all of
them that learns."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from m2sa_training.training.options import ADDED_LATER, TrainingOptions, parse_options
from modeling_m2sa.errors_m2sa import M2SAError

TWEET = "I love this so much"


def build(tiny_towers, *flags):
    from m2sa_training.training.model_setup import build_model_and_processor

    return build_model_and_processor(parse_options(["--vision-model", "none", *flags]), "text",
                                     tiny_towers["xlm-roberta"], None, seed=0)


def learning_rates(optimizer):
    """{parameter: learning rate} of an optimizer's groups."""
    return {parameter: group["lr"] for group in optimizer.param_groups for parameter in group["params"]}


def test_layerwise_decay_gives_each_text_layer_its_rate_and_the_rest_the_full_rate(tiny_towers):
    from m2sa_training.training.optimization import optimizer_and_scheduler

    model, _ = build(tiny_towers, "--learning-rate", "1e-3", "--layerwise-lr-decay", "0.5")
    optimizer, _ = optimizer_and_scheduler(model, parse_options(["--learning-rate", "1e-3",
                                                                  "--layerwise-lr-decay", "0.5"]), num_train_rows=64)
    rates = learning_rates(optimizer)
    num_layers = model.config.text_config.num_hidden_layers
    assert num_layers == 2
    expected = {"m2sa.text_model.embeddings.word_embeddings.weight": 1e-3 * 0.25,
                "m2sa.text_model.encoder.layer.0.attention.self.query.weight": 1e-3 * 0.5,
                "m2sa.text_model.encoder.layer.1.output.dense.weight": 1e-3,
                "head.classifier.weight": 1e-3}
    parameters = dict(model.named_parameters())
    for name, rate in expected.items():
        assert rates[parameters[name]] == pytest.approx(rate), name
    assert set(rates) == {parameter for parameter in model.parameters() if parameter.requires_grad}
    # Without decay there is one group at the full rate, as before the option existed (old checkpoints resume).
    optimizer, _ = optimizer_and_scheduler(model, parse_options(["--learning-rate", "1e-3"]), num_train_rows=64)
    assert [group["lr"] for group in optimizer.param_groups] == [1e-3]


def test_layerwise_decay_on_a_tower_without_numbered_layers_is_refused(tiny_towers):
    from m2sa_training.training.optimization import parameter_groups

    model, _ = build(tiny_towers)
    for name, parameter in list(model.m2sa.text_model.encoder.named_parameters()):  # rename its numbered layers
        model.m2sa.text_model.encoder.register_parameter(name.replace(".", "_"), parameter)
    model.m2sa.text_model.encoder.layer = torch.nn.ModuleList()
    with pytest.raises(M2SAError, match="--layerwise-lr-decay needs the text tower's numbered layers") as error:
        parameter_groups(model, 1e-3, 0.8)
    assert error.value.code == "conflicting_options"
    assert len(parameter_groups(model, 1e-3, 1.0)) == 1  # without decay nothing is asked of the tower


@pytest.mark.parametrize(("scheduler", "middle"), [("linear", 0.5), ("cosine", 0.5), ("constant_with_warmup", 1.0)])
def test_the_schedule_warms_up_then_follows_lr_scheduler(tiny_towers, scheduler, middle):
    from m2sa_training.training.optimization import optimizer_and_scheduler

    flags = ["--learning-rate", "1e-3", "--batch-size", "10", "--num-epochs", "2", "--warmup-ratio", "0.2",
             "--lr-scheduler", scheduler]
    model, _ = build(tiny_towers, *flags)
    optimizer, schedule = optimizer_and_scheduler(model, parse_options(flags), num_train_rows=100)  # 20 steps
    rates = []
    for _ in range(20):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert rates[0] == 0.0 and rates[2] == pytest.approx(0.5e-3)  # 4 warm-up steps
    assert rates[4] == pytest.approx(1e-3)
    assert rates[12] == pytest.approx(middle * 1e-3)  # half-way through the 16 steps after the warm-up
    if scheduler == "cosine":
        assert rates[8] == pytest.approx(1e-3 * (1 + 0.5 ** 0.5) / 2)  # a quarter of the way: cosine, not linear


def test_label_smoothing_is_the_cross_entropy_against_smoothed_labels(tiny_towers):
    from m2sa_training.training.loop import training_loss

    model, processor = build(tiny_towers)
    inputs = processor(text=[TWEET, "awful", "the train is late"], return_tensors="pt")
    labels = torch.tensor([2, 0, 1])
    outputs = model(**inputs, labels=labels)
    assert training_loss(outputs, labels, 0.0) is outputs.loss
    smoothed = training_loss(outputs, labels, 0.3)
    log_probs = outputs.logits.float().log_softmax(-1)
    targets = torch.full((3, 3), 0.1).scatter(1, labels[:, None], 0.8)  # 0.7 on the label + 0.3 spread over 3
    assert smoothed.item() == pytest.approx(-(targets * log_probs).sum(-1).mean().item(), rel=1e-6)
    assert smoothed.item() != pytest.approx(outputs.loss.item())


def test_frozen_word_embeddings_get_no_gradient_and_the_rest_of_the_tower_does(tiny_towers):
    model, processor = build(tiny_towers, "--freeze-word-embeddings")
    embeddings = model.get_input_embeddings().weight
    assert not embeddings.requires_grad
    frozen = [name for name, parameter in model.named_parameters() if not parameter.requires_grad]
    assert frozen == ["m2sa.text_model.embeddings.word_embeddings.weight"]
    model.train()(**processor(text=[TWEET], return_tensors="pt"), labels=torch.tensor([2])).loss.backward()
    assert embeddings.grad is None
    assert model.m2sa.text_model.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("flags", "message"), [
    (["--layerwise-lr-decay", "0"], "--layerwise-lr-decay is a factor in \\(0, 1\\]"),
    (["--layerwise-lr-decay", "1.2"], "--layerwise-lr-decay is a factor in \\(0, 1\\]"),
    (["--label-smoothing", "1"], "--label-smoothing is a share in \\[0, 1\\)"),
    (["--label-smoothing", "0.1", "--problem-type", "regression", "--label-column", "score"],
     "--label-smoothing smooths class labels"),
    (["--freeze-word-embeddings", "--freeze-text-model"], "already freezes the whole text tower"),
])
def test_bad_lever_values_are_refused_with_what_to_do(flags, message):
    with pytest.raises(M2SAError, match=message):
        parse_options(flags)


def test_the_prefix_is_read_before_every_tweet_with_text_and_saved_with_the_processor(tiny_towers, tmp_path):
    from modeling_m2sa import M2SAProcessor

    _, processor = build(tiny_towers, "--text-prefix", "query: ")
    tokenizer = processor.tokenizer
    assert processor.model_texts([TWEET, "", " "]) == [f"query: {TWEET}", "", " "]
    encoded = processor(text=[f"@Someone {TWEET}"], return_tensors="pt")
    assert encoded["input_ids"][0].tolist() == tokenizer(f"query: @user {TWEET}")["input_ids"]  # normalised first
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["text_prefix"] == "query: "
    assert M2SAProcessor.from_pretrained(tmp_path).text_prefix == "query: "
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    del saved["text_prefix"]  # a processor saved before the setting existed reads tweets without one
    (tmp_path / "processor_config.json").write_text(json.dumps(saved))
    reloaded = M2SAProcessor.from_pretrained(tmp_path)
    assert reloaded(text=[TWEET], return_tensors="pt")["input_ids"][0].tolist() == tokenizer(TWEET)["input_ids"]


def test_a_run_saved_before_an_option_existed_holds_its_default(tmp_path):
    from m2sa_training.training.run import options_changed_since

    saved = json.loads(TrainingOptions().to_json())
    for name in ADDED_LATER:
        del saved[name]
    config = tmp_path / "run_config.json"
    config.write_text(json.dumps(saved))
    assert options_changed_since(config, parse_options([])) == []
    assert options_changed_since(config, parse_options(["--label-smoothing", "0.1"])) == ["label_smoothing"]
    assert options_changed_since(config, parse_options(["--text-prefix", "query: "])) == ["text_prefix"]
    del saved["warmup_ratio"]  # an option every saved run names: missing, it says nothing of the run
    config.write_text(json.dumps(saved))
    assert options_changed_since(config, parse_options([])) == ["warmup_ratio"]


def train(tmp_path, *levers):
    """train.py, text only on the demo set, with `levers`: (its test macro-F1, the majority baseline's)."""
    from m2sa_training.training.run import run_training

    flags = ["--vision-model", "none", "--num-epochs", "6", "--learning-rate", "3e-3", "--early-stopping-patience", "9",
             "--seeds", "3", *levers, "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    test = run_training(parse_options(flags))["summary"]["test"]
    return test["text-only"]["overall"]["macro_f1"]["mean"], test["majority"]["overall"]["macro_f1"]["mean"]


def test_a_run_with_decay_smoothing_a_cosine_schedule_and_a_prefix_learns(tmp_path, monkeypatch):
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

    # What the run's loop does: the learning rate of each parameter group at every optimizer step, and the logits and
    # labels of every training forward pass.
    step_rates, training_batches = [], []
    forward = M2SAForSequenceClassification.forward

    def recording_forward(self, *args, **kwargs):
        output = forward(self, *args, **kwargs)
        if self.training:
            training_batches.append((output.logits.detach().clone(), kwargs["labels"].clone()))
        return output

    monkeypatch.setattr(M2SAForSequenceClassification, "forward", recording_forward)
    hook = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: step_rates.append([group["lr"] for group in optimizer.param_groups]))
    try:
        macro_f1, majority = train(tmp_path, "--layerwise-lr-decay", "0.8", "--label-smoothing", "0.1",
                                   "--warmup-ratio", "0.1", "--lr-scheduler", "cosine", "--text-prefix", "query: ")
    finally:
        hook.remove()
    assert macro_f1 > majority + 0.2
    assert M2SAProcessor.from_pretrained(tmp_path / "out").text_prefix == "query: "

    # Decay 0.8 over the tiny tower's 2 layers: its embeddings learn at 0.64 of the rate, layer 0 at 0.8, the rest at
    # the full rate; the full rate warms up over 10 % of the steps, then follows a cosine down to 0.
    total = len(step_rates)
    warmup = int(0.1 * total)
    assert total == len(training_batches) and warmup > 0
    for step, rates in enumerate(step_rates):
        progress = (step - warmup) / (total - warmup)
        full = 3e-3 * (step / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * progress)))
        assert rates == pytest.approx([full, 0.8 * full, 0.64 * full], rel=1e-6, abs=1e-12), step
    # The loss it minimised is smoothed: each epoch's reported training loss is the mean over its batches of the
    # cross-entropy against labels smoothed by 0.1, not the plain one.
    history = json.loads((tmp_path / "out" / "runs" / "text-seed3" / "results.json").read_text())["history"]
    steps_per_epoch = total // len(history)
    for epoch in history:
        batches = training_batches[(epoch["epoch"] - 1) * steps_per_epoch:epoch["epoch"] * steps_per_epoch]
        smoothed, plain = (
            sum(torch.nn.functional.cross_entropy(logits.float(), labels, label_smoothing=smoothing).item()
                for logits, labels in batches) / len(batches)
            for smoothing in (0.1, 0.0))
        assert epoch["train_loss"] == pytest.approx(smoothed, rel=1e-5)
        assert epoch["train_loss"] != pytest.approx(plain, rel=1e-3)


def test_a_run_with_frozen_word_embeddings_learns_and_keeps_them(tmp_path):
    """The tiny tower's word embeddings are random (nothing pretrained to keep), so this run learns more slowly than
    one that trains them; it still beats the majority baseline, through the layers above."""
    macro_f1, majority = train(tmp_path, "--freeze-word-embeddings")
    assert macro_f1 > majority + 0.1
    key = "embeddings.word_embeddings.weight"
    start = load_file(next((tmp_path / "out" / "towers" / "seed3" / "text-tower").glob("*.safetensors")))
    trained = load_file(tmp_path / "out" / "model.safetensors")
    assert torch.equal(trained[f"m2sa.text_model.{key}"], start[key])
    layer = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(trained[f"m2sa.text_model.{layer}"], start[layer])


def test_the_umsab_multilingual_e5_preset_trains_one_text_model_for_all_languages(tmp_path):
    options = parse_options(["--preset", "umsab_multilingual_e5", "--text-model", str(tmp_path / "e5"),
                             "--dataset", str(tmp_path / "umsab")])
    assert (options.vision_model, options.modalities, options.languages) == ("none", ["text"], ["all"])
    assert (options.learning_rate, options.batch_size, options.num_epochs) == (5e-5, 32, 3)
    assert options.label_smoothing == 0.1
    assert options.freeze_word_embeddings and options.text_normalization == "twitter"
    assert options.text_model == str(tmp_path / "e5")  # the flag over the preset's Hub id
    assert parse_options(["--preset", "umsab_multilingual_e5"]).text_model == "intfloat/multilingual-e5-small"

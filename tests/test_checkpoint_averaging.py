"""Checkpoint averaging (`--average-last-checkpoints N`): the mean of the last epoch checkpoints' weights, kept as the
model only when it beats the best epoch on validation."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from m2sa_training.training.checkpoint_averaging import averaged_weights
from m2sa_training.training.options import parse_options
from modeling_m2sa.errors_m2sa import M2SAError


def checkpoint(folder, **weights):
    folder.mkdir(parents=True)
    save_file(weights, folder / "model.safetensors")
    return folder


def test_floating_weights_are_averaged_in_their_dtype_and_integer_buffers_kept(tmp_path):
    first = checkpoint(tmp_path / "epoch-1", w=torch.tensor([1.0, 2.0]), h=torch.tensor([1.0], dtype=torch.bfloat16),
                       ids=torch.tensor([0, 1, 2]))
    second = checkpoint(tmp_path / "epoch-2", w=torch.tensor([3.0, 6.0]), h=torch.tensor([2.0], dtype=torch.bfloat16),
                        ids=torch.tensor([0, 1, 2]))
    third = checkpoint(tmp_path / "epoch-3", w=torch.tensor([2.0, 1.0]), h=torch.tensor([3.0], dtype=torch.bfloat16),
                       ids=torch.tensor([0, 1, 2]))
    averaged = averaged_weights([first, second, third])
    assert torch.equal(averaged["w"], torch.tensor([2.0, 3.0]))
    assert averaged["h"].dtype == torch.bfloat16 and averaged["h"].item() == 2.0
    assert averaged["ids"].dtype == torch.int64 and averaged["ids"].tolist() == [0, 1, 2]
    assert torch.equal(averaged_weights([first, second])["w"], torch.tensor([2.0, 4.0]))


def test_checkpoints_of_different_models_are_refused(tmp_path):
    first = checkpoint(tmp_path / "a", w=torch.zeros(2))
    other = checkpoint(tmp_path / "b", v=torch.zeros(2))
    with pytest.raises(M2SAError, match="holds other weights than .* only checkpoints of one run") as error:
        averaged_weights([first, other])
    assert error.value.code == "bad_checkpoint"


@pytest.mark.parametrize(("flags", "message"), [
    (["--average-last-checkpoints", "1"], "averages N >= 2 epoch checkpoints, got 1; pass 0"),
    (["--average-last-checkpoints", "-2"], "averages N >= 2 epoch checkpoints, got -2"),
    (["--average-last-checkpoints", "3", "--num-epochs", "2"], "needs 3 epochs, but --num-epochs is 2"),
    (["--average-last-checkpoints", "2", "--save-total-limit", "1"], "raise --save-total-limit to 2"),
    (["--average-last-checkpoints", "2", "--lora-r", "4"], "average each adapter's two factors apart"),
])
def test_averaging_that_cannot_be_done_is_refused_with_what_to_do(flags, message):
    with pytest.raises(M2SAError, match=message):
        parse_options(flags)


def train_averaging(tmp_path, num_epochs, last):
    """train.py, text only on the demo set, averaging the `last` epochs: (its summary's test block, its run folder)."""
    from m2sa_training.training.run import run_training

    flags = ["--vision-model", "none", "--modalities", "text", "--num-epochs", str(num_epochs), "--learning-rate",
             "3e-3", "--early-stopping-patience", "9", "--seeds", "3", "--average-last-checkpoints", str(last),
             "--no-calibrate", "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    return run_training(parse_options(flags))["summary"]["test"], tmp_path / "out" / "runs" / "text-seed3"


def assert_saved_model_is(output_dir, expected):
    saved = load_file(output_dir / "model.safetensors")
    assert saved.keys() <= expected.keys()
    for name, tensor in saved.items():
        assert torch.equal(tensor, expected[name]), name


def test_a_run_averages_its_last_epochs_keeps_the_better_model_and_learns(tmp_path):
    test, run_dir = train_averaging(tmp_path, num_epochs=6, last=3)
    assert test["text-only"]["overall"]["macro_f1"]["mean"] > test["majority"]["overall"]["macro_f1"]["mean"] + 0.2
    outcome = json.loads((run_dir / "results.json").read_text())
    average = outcome["checkpoint_average"]
    assert average["epochs"] == [4, 5, 6]
    best_epoch_f1 = max(epoch["validation_macro_f1"] for epoch in outcome["history"])
    assert average["kept"] == (average["validation_macro_f1"] > best_epoch_f1)
    # The model kept, and the validation score reported for it, are the average's when it was kept, else the best
    # epoch's.
    kept_f1 = average["validation_macro_f1"] if average["kept"] else best_epoch_f1
    assert outcome["results"]["validation"]["overall"]["macro_f1"] == pytest.approx(kept_f1)
    checkpoints = run_dir / "checkpoints"
    assert_saved_model_is(tmp_path / "out", averaged_weights([checkpoints / f"epoch-{epoch}" for epoch in (4, 5, 6)])
                          if average["kept"] else
                          load_file(checkpoints / f"epoch-{outcome['best_epoch']}" / "model.safetensors"))


def test_an_average_that_beats_the_best_epoch_becomes_the_model(tmp_path, monkeypatch):
    """The epochs are ranked here by their validation macro-F1 less 1, so the average (scored as it is, after the last
    epoch) beats the best of them by the real rule: the exported model holds exactly the mean of the last two
    checkpoints, and the reported validation score is the average's."""
    import m2sa_training.training.loop

    end_epoch = m2sa_training.training.loop.end_epoch

    def end_epoch_scored_lower(options, run, spec, state, epoch, validation_metric):
        return end_epoch(options, run, spec, state, epoch, validation_metric - 1)

    monkeypatch.setattr(m2sa_training.training.loop, "end_epoch", end_epoch_scored_lower)
    _, run_dir = train_averaging(tmp_path, num_epochs=3, last=2)
    outcome = json.loads((run_dir / "results.json").read_text())
    best_epoch_f1 = max(epoch["validation_macro_f1"] for epoch in outcome["history"])
    assert outcome["checkpoint_average"]["validation_macro_f1"] > best_epoch_f1 - 1  # what the decision compared
    assert outcome["checkpoint_average"]["epochs"] == [2, 3] and outcome["checkpoint_average"]["kept"]
    assert outcome["results"]["validation"]["overall"]["macro_f1"] == pytest.approx(
        outcome["checkpoint_average"]["validation_macro_f1"])
    checkpoints = run_dir / "checkpoints"
    averaged = averaged_weights([checkpoints / "epoch-2", checkpoints / "epoch-3"])
    assert not torch.equal(averaged["head.classifier.weight"],
                           load_file(checkpoints / "epoch-3" / "model.safetensors")["head.classifier.weight"])
    assert_saved_model_is(tmp_path / "out", averaged)


def test_a_run_without_averaging_records_none(tmp_path):
    _, run_dir = train_averaging(tmp_path, num_epochs=2, last=0)
    assert json.loads((run_dir / "results.json").read_text())["checkpoint_average"] is None

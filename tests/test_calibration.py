"""Temperature scaling: the fit, the metrics, the pipeline applying `config.calibration_temperature`, and what a
training run reports."""

import json
import shutil

import pytest
import torch
from transformers import pipeline

from m2sa_training.evaluation.calibration import (
    calibration_metrics,
    calibration_report,
    class_shares,
    fit_temperature,
    negative_log_likelihood,
)
from modeling_m2sa import M2SAConfig
from modeling_m2sa.errors_m2sa import M2SAError


def over_confident_logits(scale=3.0, tweets=4000, seed=0):
    """Labels drawn from softmax(z), and logits `scale` * z: a model `scale` times too sure of itself."""
    generator = torch.Generator().manual_seed(seed)
    true_logits = torch.randn(tweets, 3, generator=generator) * 1.5
    labels = torch.multinomial(true_logits.softmax(dim=-1), 1, generator=generator)[:, 0]
    return true_logits * scale, labels


def test_an_over_confident_model_gets_t_above_one_and_lower_nll_and_ece():
    logits, labels = over_confident_logits(scale=3.0)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)  # the scale the logits were inflated by
    report = calibration_report(logits, labels, temperature, ["negative", "neutral", "positive"])
    assert report["after"]["nll"] < report["before"]["nll"] - 0.1
    assert report["after"]["ece"] < report["before"]["ece"] / 2
    assert report["after"]["accuracy"] == report["before"]["accuracy"]  # a temperature never changes a label
    # the fit is the minimum: a little either side is worse
    for other in (temperature * 0.9, temperature * 1.1):
        assert negative_log_likelihood(logits, labels, other) > negative_log_likelihood(logits, labels, temperature)


def test_an_under_confident_model_gets_t_below_one():
    logits, labels = over_confident_logits(scale=0.5)
    assert fit_temperature(logits, labels) == pytest.approx(0.5, rel=0.15)


def test_ece_brier_and_nll_on_a_hand_computed_case():
    probabilities = torch.tensor([[0.9, 0.05, 0.05]] * 10)
    labels = torch.tensor([0] * 5 + [1] * 5)  # 90 % confident, half right
    metrics = calibration_metrics(probabilities, labels)
    assert metrics["ece"] == pytest.approx(0.4)
    assert metrics["brier"] == pytest.approx((0.1**2 + 2 * 0.05**2 + 0.9**2 + 0.95**2 + 0.05**2) / 2)
    assert metrics["nll"] == pytest.approx(-(torch.tensor(0.9).log() + torch.tensor(0.05).log()).item() / 2)
    labels = torch.tensor([0] * 9 + [1])  # 90 % confident, 90 % right: calibrated
    assert calibration_metrics(probabilities, labels)["ece"] == pytest.approx(0.0, abs=1e-6)  # 0.9 in float32


def test_class_shares_two_ways():
    probabilities = torch.tensor([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.2, 0.7, 0.1]])
    shares = class_shares(probabilities, torch.tensor([0, 1, 2, 2]), ["negative", "neutral", "positive"])
    assert shares["negative"] == pytest.approx({"true": 0.25, "classify_and_count": 0.5, "mean_probability": 0.4})
    assert shares["positive"] == pytest.approx({"true": 0.5, "classify_and_count": 0.25, "mean_probability": 0.2})


def test_a_temperature_must_be_positive():
    with pytest.raises(M2SAError, match="calibration_temperature` must be positive"):
        M2SAConfig(calibration_temperature=0.0)


def with_temperature(saved_tiny_model_dir, tmp_path, temperature):
    directory = tmp_path / f"t-{temperature}"
    shutil.copytree(saved_tiny_model_dir, directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "calibration_temperature": temperature}))
    return pipeline(model=str(directory), trust_remote_code=True, backend="fp32")


TWEETS = ["I love this so much, best day ever!", "Das ist schrecklich und langweilig.", "Le train part à midi."]


def test_the_pipeline_divides_the_logits_by_the_temperature(saved_tiny_model_dir, tmp_path):
    plain = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True, backend="fp32")
    one = with_temperature(saved_tiny_model_dir, tmp_path, 1.0)
    hot = with_temperature(saved_tiny_model_dir, tmp_path, 4.0)
    plain_results, one_results, hot_results = (pipe(TWEETS, top_k=None) for pipe in (plain, one, hot))
    assert one_results == plain_results  # T = 1: bit for bit
    logits = plain(TWEETS, top_k=None, function_to_apply="none")
    for raw, calibrated, uncalibrated in zip(logits, hot_results, plain_results):
        by_label = plain.scores_by_label(raw)
        expected = (torch.tensor(list(by_label.values())) / 4.0).softmax(dim=-1)
        assert list(hot.scores_by_label(calibrated).values()) == pytest.approx(expected.tolist(), abs=1e-6)
        assert calibrated[0]["label"] == uncalibrated[0]["label"]
        assert calibrated[0]["score"] < uncalibrated[0]["score"]  # softer
    assert hot(TWEETS, top_k=None, function_to_apply="none") == logits  # raw logits stay raw

"""Temperature scaling: one scalar T per model, fitted on the validation split by minimising the negative
log-likelihood of softmax(logits / T), saved as `config.temperature` and applied by the pipeline.

Dividing every logit by the same T > 0 never changes a tweet's arg-max label, only how confident its probabilities
are (fine-tuned transformers are over-confident: T > 1 softens them). The report measures that confidence against
the labels: expected calibration error over `ECE_BINS` equal-width confidence bins, the Brier score and the NLL,
before and after, and the share of each class estimated two ways: classify-and-count (share of arg-max labels) and
the mean probability (unbiased when the probabilities are calibrated), next to the true share.
"""

import math

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)
"""T is searched in log space within these bounds: beyond them a model is degenerate, not just over-confident."""


def negative_log_likelihood(logits, labels, temperature=1.0):
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, labels))


def fit_temperature(logits, labels):
    """The T minimising the NLL of softmax(`logits` / T) against `labels` (golden-section search on log T, which is
    convex in log T); 1.0 when there is nothing to fit."""
    logits, labels = torch.as_tensor(logits).double(), torch.as_tensor(labels)
    if len(labels) == 0:
        return 1.0
    low, high = (math.log(bound) for bound in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(100):
        left, right = high - ratio * (high - low), low + ratio * (high - low)
        if negative_log_likelihood(logits, labels, math.exp(left)) <= negative_log_likelihood(
                logits, labels, math.exp(right)):
            high = right
        else:
            low = left
    return math.exp((low + high) / 2)


def confidence_bins(probabilities, labels, bins=ECE_BINS):
    """(top-label confidence, whether the top label is right, bin index) per tweet, for `bins` equal-width bins."""
    probabilities, labels = torch.as_tensor(probabilities).double(), torch.as_tensor(labels)
    confidence, predicted = probabilities.max(dim=-1)
    return confidence, (predicted == labels).double(), torch.clamp((confidence * bins).long(), max=bins - 1)


def calibration_metrics(probabilities, labels, bins=ECE_BINS):
    """Expected calibration error (top-label confidence against accuracy, `bins` equal-width bins, weighted by their
    share of tweets), Brier score (mean squared error of the probability vector against the one-hot label, summed over
    classes) and NLL of `probabilities` (rows sum to 1) against `labels`."""
    probabilities, labels = torch.as_tensor(probabilities).double(), torch.as_tensor(labels)
    confidence, correct, bin_of = confidence_bins(probabilities, labels, bins)
    ece = sum((float(members.double().mean() * (confidence[members].mean() - correct[members].mean()).abs())
               for members in (bin_of == index for index in range(bins)) if members.any()), 0.0)
    one_hot = torch.nn.functional.one_hot(labels, probabilities.shape[-1]).double()
    picked = probabilities.gather(1, labels[:, None]).clamp_min(1e-12)
    return {"ece": ece, "brier": float(((probabilities - one_hot) ** 2).sum(dim=-1).mean()),
            "nll": float(-picked.log().mean()), "accuracy": float(correct.mean())}


def reliability_bins(probabilities, labels, bins=ECE_BINS):
    """Per non-empty confidence bin: (mean confidence, accuracy, tweets), for the reliability diagram."""
    confidence, correct, bin_of = confidence_bins(probabilities, labels, bins)
    return [(float(confidence[members].mean()), float(correct[members].mean()), int(members.sum()))
            for members in (bin_of == index for index in range(bins)) if members.any()]


def class_shares(probabilities, labels, label_names):
    """{label: {true, classify_and_count, mean_probability}}: the share of each class in `labels`, among the arg-max
    predictions, and as the mean of its probability."""
    probabilities, labels = torch.as_tensor(probabilities).double(), torch.as_tensor(labels)
    predicted = probabilities.argmax(dim=-1)
    return {name: {"true": float((labels == index).double().mean()),
                   "classify_and_count": float((predicted == index).double().mean()),
                   "mean_probability": float(probabilities[:, index].mean())}
            for index, name in enumerate(label_names)}


def calibration_report(logits, labels, temperature, label_names):
    """Metrics of softmax(logits) and softmax(logits / `temperature`) against `labels`, and the class shares after."""
    logits, labels = torch.as_tensor(logits).double(), torch.as_tensor(labels)
    before, after = logits.softmax(dim=-1), (logits / temperature).softmax(dim=-1)
    return {"temperature": temperature, "tweets": len(labels), "bins": ECE_BINS,
            "before": calibration_metrics(before, labels), "after": calibration_metrics(after, labels),
            "shares": class_shares(after, labels, label_names),
            "reliability": {"before": reliability_bins(before, labels), "after": reliability_bins(after, labels)}}


def reliability_figure(report, title):
    """A reliability diagram as a matplotlib `Figure`: accuracy against confidence per bin, before and after
    temperature scaling."""
    figure = Figure(figsize=(4.5, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for stage, style in (("before", "o-"), ("after", "s-")):
        rows = report["reliability"][stage]
        name = "uncalibrated" if stage == "before" else f"T = {report['temperature']:.2f}"
        axes.plot([row[0] for row in rows], [row[1] for row in rows], style, markersize=4,
                  label=f"{name} (ECE {100 * report[stage]['ece']:.1f})")
    axes.set_xlabel("confidence (top-label probability)")
    axes.set_ylabel("accuracy")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_title(title, fontsize=9)
    axes.legend(loc="upper left", fontsize=8)
    return figure


def calibration_markdown(calibration):
    """What the model card and evaluation.md say of a model's calibration: its temperature, the test split's ECE,
    Brier score and NLL before and after, and the class shares estimated both ways next to the true ones."""
    test, validation = calibration["test"], calibration["validation"]
    metrics_rows = "\n".join(
        f"| {name} | {100 * test[stage]['ece']:.1f} | {test[stage]['brier']:.3f} | {test[stage]['nll']:.3f} |"
        for stage, name in (("before", "softmax of the logits"), ("after", "calibrated: softmax of logits / T")))
    share_rows = "\n".join(f"| {label} | {share['true']:.1%} | {share['classify_and_count']:.1%} | "
                           f"{share['mean_probability']:.1%} |" for label, share in test["shares"].items())
    return f"""The pipeline's probabilities are softmax(logits / T) with T = {test['temperature']:.3f}, fitted on the \
validation split ({validation['tweets']} tweets) by minimising the negative log-likelihood \
(`config.calibration_temperature`; a temperature never changes a label). On the test split ({test['tweets']} tweets; \
expected calibration error over {test['bins']} confidence bins, in points):

| probabilities | ECE | Brier score | NLL |
|---|---:|---:|---:|
{metrics_rows}

The share of each class on the test split, from the labels (classify and count) and from the calibrated probabilities
(their mean), next to the true share:

| label | true share | classify and count | mean probability |
|---|---:|---:|---:|
{share_rows}"""

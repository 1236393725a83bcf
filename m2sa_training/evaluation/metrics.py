"""Sentiment metrics (overall and per language) and their aggregation over seeds; `reports` writes them down.

Classification metrics come from scikit-learn with the label ids fixed, so a class absent from a language's labels
and predictions still counts (as 0) in that language's macro averages. The label names come from the data (its
`label` ClassLabel); reports read them from the results. A regression model (`--problem-type regression`) is scored
by MSE and MAE (scikit-learn) and Pearson and Spearman correlations (SciPy, which scikit-learn depends on); its results
say `"problem_type": "regression"`, and the reports read that.
"""

from dataclasses import dataclass

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
)

from dataset_script.schema import LABEL_NAMES
from modeling_m2sa.configuration_m2sa import CLASSIFICATION, REGRESSION

SCALAR_METRICS = ("macro_precision", "macro_recall", "macro_f1", "accuracy")
REGRESSION_METRICS = ("mse", "mae", "pearson", "spearman")
METRIC_TITLES = {**dict(zip(SCALAR_METRICS, ("macro-P", "macro-R", "macro-F1", "accuracy"))),
                 **dict(zip(REGRESSION_METRICS, ("MSE", "MAE", "Pearson r", "Spearman ρ")))}  # fmt: skip
OVERALL = "overall"


@dataclass(frozen=True)
class BestModelMetric:
    """The validation metric that chooses the best epoch, and its direction (the Trainer's `metric_for_best_model`
    and `greater_is_better`)."""

    name: str  # a key of a result's metric block
    greater_is_better: bool

    @property
    def title(self):
        return METRIC_TITLES[self.name]

    def is_better(self, value, best):
        """Whether `value` beats `best` (None: nothing measured yet)."""
        if best is None:
            return True
        return value > best if self.greater_is_better else value < best


BEST_MODEL_METRICS = {CLASSIFICATION: BestModelMetric("macro_f1", greater_is_better=True),
                      REGRESSION: BestModelMetric("mse", greater_is_better=False)}  # fmt: skip
"""The best epoch of a run, by `--problem-type`: the highest validation macro-F1, or the lowest validation MSE."""


def is_regression(result):
    """Whether `result` (of `compute_metrics`, `compute_regression_metrics` or `aggregate_runs`) scores a
    regression model."""
    return result.get("problem_type") == REGRESSION


def _check_lengths(labels, predictions, languages):
    if not (len(labels) == len(predictions) == len(languages)):
        raise ValueError(
            f"labels, predictions and languages must have the same length, got {len(labels)}, {len(predictions)} "
            f"and {len(languages)}: pass one label, one prediction and one language code per example."
        )
    if not labels:
        raise ValueError("No examples to evaluate: labels, predictions and languages are empty.")


def _check_languages(languages):
    bad = [index for index, language in enumerate(languages) if not isinstance(language, str) or not language]
    if bad:
        raise ValueError(
            f"languages must be non-empty ISO codes (str), got {languages[bad[0]]!r} at index {bad[0]}"
            f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}."
        )


def _check_inputs(labels, predictions, languages, label_names):
    _check_lengths(labels, predictions, languages)
    label_ids = list(range(len(label_names)))
    for name, values in (("labels", labels), ("predictions", predictions)):
        bad = [index for index, value in enumerate(values) if value not in label_ids]
        if bad:
            shown = ", ".join(f"{values[index]!r} (index {index})" for index in bad[:5])
            raise ValueError(
                f"{name} must be label ids in {label_ids} ({', '.join(label_names)}), got {shown}"
                f"{'...' if len(bad) > 5 else ''}."
            )
    _check_languages(languages)


def _metrics(labels, predictions, label_ids):
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, labels=label_ids, average="macro", zero_division=0
    )
    return {
        "macro_f1": float(f1),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "accuracy": float(accuracy_score(labels, predictions)),
        "support": len(labels),
        "confusion_matrix": confusion_matrix(labels, predictions, labels=label_ids).tolist(),
    }


def compute_metrics(labels, predictions, languages, label_names=LABEL_NAMES):
    """Macro precision / recall / F1, accuracy, support and confusion matrix, overall and per language.

    Args:
        labels, predictions: label ids in `range(len(label_names))`, one per example.
        languages: the ISO code of each example's language.
        label_names: the class names in id order, from the dataset's `label` ClassLabel.

    Returns:
        `{"overall": M, "per_language": {language: M}, "label_names": [...]}` with languages sorted, where `M` holds
        `macro_f1`, `macro_precision`, `macro_recall`, `accuracy` (floats), `support` (int) and `confusion_matrix`
        (rows are true labels, columns predictions, both in `label_names` order).
    """
    labels, predictions, languages = list(labels), list(predictions), list(languages)
    _check_inputs(labels, predictions, languages, label_names)
    label_ids = list(range(len(label_names)))
    labels = [int(label) for label in labels]
    predictions = [int(prediction) for prediction in predictions]
    per_language = {}
    for language in sorted(set(languages)):
        indices = [index for index, code in enumerate(languages) if code == language]
        per_language[language] = _metrics([labels[i] for i in indices], [predictions[i] for i in indices], label_ids)
    return {OVERALL: _metrics(labels, predictions, label_ids), "per_language": per_language,
            "label_names": list(label_names)}


def _correlation(correlation, labels, predictions):
    """A SciPy correlation of labels and predictions, or None where it is undefined (fewer than two examples, or
    constant labels or predictions, as the mean baseline's)."""
    if len(labels) < 2 or np.ptp(labels) == 0 or np.ptp(predictions) == 0:
        return None
    return float(correlation(labels, predictions).statistic)


def _regression_metrics(labels, predictions):
    labels, predictions = np.asarray(labels, dtype=float), np.asarray(predictions, dtype=float)
    return {
        "mse": float(mean_squared_error(labels, predictions)),
        "mae": float(mean_absolute_error(labels, predictions)),
        "pearson": _correlation(pearsonr, labels, predictions),
        "spearman": _correlation(spearmanr, labels, predictions),
        "support": len(labels),
    }


def compute_regression_metrics(labels, predictions, languages):
    """Mean squared and absolute error, Pearson r and Spearman ρ and support, overall and per language, of a
    regression model.

    Args:
        labels, predictions: finite numbers, one per example.
        languages: the ISO code of each example's language.

    Returns:
        `{"problem_type": "regression", "overall": M, "per_language": {language: M}}` with languages sorted, where
        `M` holds `mse`, `mae` (floats), `pearson`, `spearman` (floats, None where undefined: fewer than two examples,
        or constant labels or predictions) and `support` (int).
    """
    labels, predictions, languages = list(labels), list(predictions), list(languages)
    _check_lengths(labels, predictions, languages)
    for name, values in (("labels", labels), ("predictions", predictions)):
        bad = [index for index, value in enumerate(values)
               if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value)]
        if bad:
            raise ValueError(f"{name} must be finite numbers, got {values[bad[0]]!r} at index {bad[0]}.")
    _check_languages(languages)
    per_language = {}
    for language in sorted(set(languages)):
        indices = [index for index, code in enumerate(languages) if code == language]
        per_language[language] = _regression_metrics([labels[i] for i in indices], [predictions[i] for i in indices])
    return {"problem_type": REGRESSION, OVERALL: _regression_metrics(labels, predictions),
            "per_language": per_language}


def mean_baseline_predictions(train_labels, num_examples):
    """The regression baseline: the mean of `train_labels`, repeated `num_examples` times."""
    if not len(train_labels):
        raise ValueError("train_labels is empty: the mean baseline needs the training values.")
    return [float(np.mean(train_labels))] * num_examples


def majority_baseline_predictions(train_labels, num_examples, num_labels=len(LABEL_NAMES)):
    """The most frequent label of `train_labels` (ties go to the lowest label id), repeated `num_examples` times."""
    counts = [0] * num_labels
    for label in train_labels:
        if label not in range(num_labels):
            raise ValueError(f"train_labels must be label ids in {list(range(num_labels))}, got {label!r}.")
        counts[int(label)] += 1
    if not any(counts):
        raise ValueError("train_labels is empty: the majority baseline needs the training labels.")
    return [counts.index(max(counts))] * num_examples


def mean_and_spread(values):
    """`{"mean", "std", "values"}` of one metric over runs: `std` is the sample standard deviation (`ddof=1`), 0.0
    for a single run."""
    values = [float(value) for value in values]
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "values": values}


def macro_f1_from_confusion(matrix):
    """Macro-F1 of a confusion matrix (rows true labels, columns predictions), as `compute_metrics` computes it: a
    class without true or predicted examples counts as 0. Summed matrices give the macro-F1 of pooled predictions."""
    matrix = np.asarray(matrix, dtype=float)
    true_positives = np.diag(matrix)
    denominators = matrix.sum(axis=0) + matrix.sum(axis=1)  # 2·TP + FP + FN
    f1 = np.divide(2 * true_positives, denominators, out=np.zeros_like(true_positives), where=denominators > 0)
    return float(f1.mean())


def _aggregate(blocks):
    aggregated = {}
    for metric in SCALAR_METRICS:
        aggregated[metric] = mean_and_spread([block[metric] for block in blocks])
    aggregated["support"] = sum(block["support"] for block in blocks)
    aggregated["confusion_matrix"] = np.sum([block["confusion_matrix"] for block in blocks], axis=0).tolist()
    aggregated["num_runs"] = len(blocks)
    return aggregated


def _aggregate_regression(blocks):
    aggregated = {}
    for metric in REGRESSION_METRICS:
        defined = [block[metric] for block in blocks if block[metric] is not None]
        aggregated[metric] = mean_and_spread(defined) if defined else None
    aggregated["support"] = sum(block["support"] for block in blocks)
    aggregated["num_runs"] = len(blocks)
    return aggregated


def aggregate_runs(runs):
    """Combine one or more `compute_metrics` results (e.g. one per seed) into mean and spread: the shape every report
    reads, whatever the number of runs.

    Each scalar metric becomes `{"mean", "std", "values"}`, where `std` is the sample standard deviation
    (`ddof=1`) over the runs, or 0.0 for a single run. Confusion matrices are summed over the runs and `support`
    is summed with them (so it stays the total of the matrix); `num_runs` says how many runs went into a block.
    A language found in only some runs is aggregated over the runs that have it.

    Results of `compute_regression_metrics` aggregate the same way (no confusion matrix; a correlation over the runs
    where it is defined, None where it is defined in none) and keep `"problem_type": "regression"`.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("aggregate_runs needs at least one compute_metrics result, got none.")
    kinds = {is_regression(run) for run in runs}
    if len(kinds) > 1:
        raise ValueError("aggregate_runs needs results of one kind; these mix classification and regression.")
    if kinds == {True}:
        kind, aggregate = {"problem_type": REGRESSION}, _aggregate_regression
    else:
        label_names = runs[0]["label_names"]
        if any(run["label_names"] != label_names for run in runs):
            raise ValueError("aggregate_runs needs results over the same labels; these runs used different label "
                             "names.")
        kind, aggregate = {"label_names": list(label_names)}, _aggregate
    languages = sorted({language for run in runs for language in run["per_language"]})
    return {
        **kind,
        OVERALL: aggregate([run[OVERALL] for run in runs]),
        "per_language": {
            language: aggregate([run["per_language"][language] for run in runs if language in run["per_language"]])
            for language in languages
        },
    }

"""`benchmarks/uncertainty.py` on cases with known answers: the Wilson interval of textbook proportions, and the
bootstrap of macro-F1 from a confusion matrix against a bootstrap that resamples the tweets themselves."""

import numpy as np
import pytest

from benchmarks.uncertainty import bootstrap_macro_f1, bootstrap_macro_f1_draws, percentile_interval, wilson_interval

# Three classes, 300 tweets: rows true labels, columns predictions. Macro-F1 0.6784 (F1 per class 0.7805, 0.5405,
# 0.7143).
CONFUSION = np.array([[80, 15, 5], [20, 50, 30], [5, 20, 75]])


def macro_f1_of_tweets(labels, predictions, classes=3):
    """Macro-F1 of label and prediction arrays (each row one resample): 2 TP / (2 TP + FP + FN) per class, averaged."""
    scores = []
    for label in range(classes):
        true_positive = ((labels == label) & (predictions == label)).sum(axis=-1)
        false_positive = ((labels != label) & (predictions == label)).sum(axis=-1)
        false_negative = ((labels == label) & (predictions != label)).sum(axis=-1)
        scores.append(2 * true_positive / np.maximum(2 * true_positive + false_positive + false_negative, 1))
    return np.mean(scores, axis=0)


@pytest.mark.parametrize(("successes", "trials", "expected"), [
    (81, 263, (0.2553, 0.3662)),  # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3
    (0, 10, (0.0, 0.2775)),  # no successes: the upper end is z^2 / (n + z^2)
    (10, 10, (0.7225, 1.0)),  # all successes: the lower end is n / (n + z^2)
    (5, 10, (0.2366, 0.7634)),  # a half: symmetric around it
])
def test_wilson_interval_of_textbook_proportions(successes, trials, expected):
    assert wilson_interval(successes, trials) == pytest.approx(expected, abs=5e-5)


def test_wilson_interval_without_trials_says_nothing():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_percentile_interval_is_the_central_share():
    assert percentile_interval(np.arange(1001) / 1000) == pytest.approx((0.025, 0.975))
    assert percentile_interval(np.arange(1001) / 1000, level=0.5) == pytest.approx((0.25, 0.75))


def test_a_perfect_classifier_has_no_uncertainty():
    assert bootstrap_macro_f1(np.diag([40, 30, 30])) == (1.0, 1.0)


def test_the_bootstrap_of_a_confusion_matrix_is_the_bootstrap_of_its_tweets():
    """Resampling the cells of the matrix is resampling the tweets: both give the same interval, within the Monte Carlo
    error of 2,000 draws (the interval ends move by about 0.002 from one draw seed to the next)."""
    labels, predictions = (np.repeat(values.ravel(), CONFUSION.ravel())
                           for values in np.indices(CONFUSION.shape))
    observed = macro_f1_of_tweets(labels, predictions)
    assert observed == pytest.approx(0.6784, abs=1e-4)
    picks = np.random.default_rng(1).integers(0, len(labels), size=(2000, len(labels)))
    by_tweets = percentile_interval(macro_f1_of_tweets(labels[picks], predictions[picks]))
    by_cells = bootstrap_macro_f1(CONFUSION)
    assert by_cells == pytest.approx(by_tweets, abs=0.01)
    assert by_cells[0] < observed < by_cells[1]
    # Its width is what 300 tweets allow: about 2 x 1.96 standard errors of the mean of per-class F1s (0.1).
    assert 0.07 < by_cells[1] - by_cells[0] < 0.13


def test_a_mean_of_seeds_matrices_is_resampled_as_its_tweets():
    """Two seeds' matrices are pooled by their mean (300 tweets, not 600): the draws of the mean of a matrix with itself
    are the draws of the matrix."""
    assert np.array_equal(bootstrap_macro_f1_draws(np.mean([CONFUSION, CONFUSION], axis=0), draws=200),
                          bootstrap_macro_f1_draws(CONFUSION, draws=200))

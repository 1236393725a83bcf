"""Bootstrap intervals of macro-F1 over test tweets, for results that kept only confusion matrices.

Resampling the tweets of a split with replacement is resampling the cells of its confusion matrix (one count per
(true label, prediction) pair) from a multinomial with the observed frequencies, so the interval needs no per-tweet
predictions. `python -m benchmarks.uncertainty` prints the 95 % intervals of the overall rows of
`benchmarks/results/umsab.json`.
"""

import json

import numpy as np

from benchmarks.harness import RESULTS
from m2sa_training.evaluation.metrics import macro_f1_from_confusion


def bootstrap_macro_f1_draws(confusion, draws=2000, seed=0):
    """Macro-F1 of `draws` resamples of the tweets behind `confusion` (rows true labels, columns predictions; a mean
    of several seeds' matrices is taken as the frequencies of its rounded total of tweets), as an array."""
    confusion = np.asarray(confusion, dtype=float)
    generator = np.random.default_rng(seed)
    tweets = int(round(confusion.sum()))
    resampled = generator.multinomial(tweets, (confusion / confusion.sum()).ravel(), size=draws)
    return np.array([macro_f1_from_confusion(cells.reshape(confusion.shape)) for cells in resampled])


def bootstrap_macro_f1(confusion, draws=2000, seed=0, level=0.95):
    """(low, high): the `level` percentile interval of macro-F1 over `draws` resamples of the tweets behind
    `confusion` (rows true labels, columns predictions)."""
    return percentile_interval(bootstrap_macro_f1_draws(confusion, draws, seed), level)


def percentile_interval(values, level=0.95):
    """(low, high): the central `level` share of `values` (bootstrap draws)."""
    return tuple(float(value) for value in np.quantile(values, [(1 - level) / 2, (1 + level) / 2]))


def wilson_interval(successes, trials, z=1.959964):
    """(low, high): the 95 % Wilson score interval of a proportion of `successes` in `trials`."""
    if trials == 0:
        return (0.0, 1.0)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * ((share * (1 - share) + z * z / (4 * trials)) / trials) ** 0.5 / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def main():
    results = json.loads((RESULTS / "umsab.json").read_text())["results"]
    for split, models in results.items():
        for model, metrics in models.items():
            overall = metrics["overall"]
            low, high = bootstrap_macro_f1(overall["confusion_matrix"])
            print(f"{split:10} {model:32} n={overall['support']:5} macro-F1 {overall['macro_f1']:.3f} "
                  f"(95 % bootstrap interval {low:.3f} to {high:.3f})")


if __name__ == "__main__":
    main()

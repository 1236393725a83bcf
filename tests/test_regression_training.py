"""train.py --problem-type regression: a float label column (sentiment intensity) learnt by a one-output head.

The data is a CSV file whose intensity follows planted cue words (+0.8 for "love"/"great", -0.8 for "hate"/"awful",
0 without a cue, plus a little noise), in two languages; validation and test are carved from it.
"""

import json
import random
import re

import pytest

from conftest import run_without_package
from m2sa_training.training.options import parse_options
from m2sa_training.training.run import prepare, run_training
from modeling_m2sa.errors_m2sa import M2SAError

CUES = {"en": {0.8: ["love", "great"], -0.8: ["hate", "awful"]},
        "de": {0.8: ["liebe", "toll"], -0.8: ["hasse", "schrecklich"]}}  # fmt: skip
FILLER = {"en": ["I", "this", "the", "train", "today", "coffee", "meeting", "weather", "at", "noon", "my", "new"],
          "de": ["ich", "das", "der", "Zug", "heute", "Kaffee", "Termin", "Wetter", "um", "acht", "mein", "neu"]}


def intensity_rows(count=800, seed=0):
    """(text, intensity, language) rows: a third with a positive cue, a third negative, a third without."""
    generator = random.Random(seed)
    rows = []
    for index in range(count):
        language = ("en", "de")[index % 2]
        words = generator.sample(FILLER[language], 4)
        value = (0.8, -0.8, 0.0)[index % 3]
        if value:
            words.insert(generator.randrange(len(words) + 1), generator.choice(CUES[language][value]))
        rows.append((" ".join(words), round(value + generator.gauss(0, 0.05), 4), language))
    return rows


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text,intensity,language\n" + "".join(f"{text},{value},{language}\n"
                                                          for text, value, language in rows))
    return path


def regression_options(dataset, tmp_path, *extra):
    return parse_options(["--dataset", str(dataset), "--label-column", "intensity", "--problem-type", "regression",
                          "--vision-model", "none", "--output-dir", str(tmp_path / "out"),
                          "--cache-dir", str(tmp_path / "cache"), *extra])


@pytest.fixture(scope="module")
def trained_regression(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("regression")
    dataset = write_csv(tmp_path / "intensity" / "tweets.csv", intensity_rows())
    options = regression_options(dataset, tmp_path, "--num-epochs", "6", "--batch-size", "16", "--max-length", "16")
    return run_training(options)


def test_the_regression_model_beats_predicting_the_training_mean(trained_regression):
    test = trained_regression["summary"]["test"]
    model, baseline = (test[name]["overall"]["mse"]["mean"] for name in ("text-only", "training mean"))
    print(f"test MSE: model {model:.4f}, training mean {baseline:.4f}")
    assert model < 0.6 * baseline
    assert test["text-only"]["overall"]["pearson"]["mean"] > 0.7
    assert test["training mean"]["overall"]["pearson"] is None  # a constant prediction has no correlation
    assert set(test["text-only"]["per_language"]) == {"de", "en"}
    assert {"mse", "mae", "pearson", "spearman", "support"} <= set(test["text-only"]["per_language"]["de"])


def test_reports_and_card_say_it_is_a_regression_model(trained_regression):
    output_dir = trained_regression["output_dir"]
    evaluation = json.loads((output_dir / "evaluation.json").read_text())
    assert evaluation["test"]["problem_type"] == "regression"
    markdown = (output_dir / "evaluation.md").read_text()
    assert "A regression model" in markdown
    assert "| language | MSE | MAE | Pearson r | Spearman ρ | support |" in markdown
    assert (output_dir / "per_language_mse_test.png").is_file()
    assert not (output_dir / "confusion_matrix_test.png").exists()
    assert "### test MSE" in trained_regression["comparison"] and "training mean" in trained_regression["comparison"]
    card = (output_dir / "README.md").read_text()
    assert "its **intensity**" in card and 'problem_type="regression"' in card and "### MSE per language" in card
    assert "name: MSE (overall)" in card and "macro-F1" not in card
    history = json.loads((output_dir / "runs" / "text-seed42" / "results.json").read_text())["history"]
    assert all("validation_mse" in epoch for epoch in history)
    best = min(history, key=lambda epoch: epoch["validation_mse"])  # the best epoch has the lowest MSE
    assert json.loads((output_dir / "runs" / "text-seed42" / "results.json").read_text())["best_epoch"] == best["epoch"]


def test_the_saved_model_loads_as_a_transformers_regression_model(trained_regression):
    from transformers import AutoModelForSequenceClassification, pipeline

    output_dir = str(trained_regression["output_dir"])
    model = AutoModelForSequenceClassification.from_pretrained(output_dir, trust_remote_code=True)
    assert model.config.problem_type == "regression" and model.config.num_labels == 1
    assert model.config.id2label == {0: "intensity"}
    score = pipeline(model=output_dir, trust_remote_code=True)
    (positive,) = score("I love this")
    (negative,) = score("I hate this")
    assert positive["label"] == "intensity"
    assert positive["score"] > negative["score"]
    assert positive["score"] > 0.3 and negative["score"] < -0.3  # raw values, no softmax


def test_the_cards_usage_snippets_run_as_written(trained_regression):
    output_dir = trained_regression["output_dir"]
    card = (output_dir / "README.md").read_text()
    usage = card[card.index("## How to use") : card.index("## Training data")]
    blocks = re.findall(r"```python\n(.*?)```", usage, flags=re.DOTALL)
    script = "\n".join(blocks) + "\nprint(repr(classify('I love this')), values.tolist())\n"
    result = run_without_package(script, cwd=output_dir.parent)  # the card names the model by its folder, `out`
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'label': 'intensity'" in result.stdout


@pytest.mark.parametrize("value, shown", [("strong", "'strong'"), ("", "no value")], ids=["text", "missing"])
def test_a_label_that_is_not_a_number_is_refused(tmp_path, value, shown):
    rows = intensity_rows(count=30)
    rows[7] = (rows[7][0], value, rows[7][2])
    dataset = write_csv(tmp_path / f"intensity-with-{value or 'none'}" / "tweets.csv", rows)
    with pytest.raises(M2SAError, match=(
            rf"regression needs a number in column 'intensity' for every tweet, but 1 of 30 rows of the train split "
            rf"of .* \(e.g. row 7 {rows[7][0]!r} has {shown}\). .*write a number \(int or float\).*--label-column")):
        prepare(regression_options(dataset, tmp_path))


def test_class_labels_and_label_names_are_refused_for_regression(tmp_path):
    import datasets

    with pytest.raises(M2SAError, match="--label-names negative positive names sentiment classes"):
        regression_options("tweets.csv", tmp_path, "--label-names", "negative", "positive")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "intensity": datasets.ClassLabel(names=["negative", "neutral", "positive"])})
    rows = datasets.Dataset.from_dict({"text": [f"t {i}" for i in range(30)], "intensity": [i % 3 for i in range(30)]},
                                      features=features)
    (tmp_path / "class-labels").mkdir()
    rows.to_parquet(tmp_path / "class-labels" / "tweets.parquet")
    with pytest.raises(M2SAError, match=r"holds sentiment classes \(negative, neutral, positive\), not numbers"):
        prepare(regression_options(tmp_path / "class-labels" / "tweets.parquet", tmp_path))


def test_the_grid_refuses_regression_runs(tmp_path):
    """The grid's report tables compare classifiers by macro-F1."""
    from m2sa_training.grid.runner import load_grid_config

    config = tmp_path / "grid.yaml"
    config.write_text("text_towers: [tiny]\nimage_towers: [none]\nmodes: [multilingual]\nlanguages: [de, en]\n"
                      "seeds: [1]\ntraining: {problem_type: regression}\n")
    with pytest.raises(M2SAError, match="grid's tables compare macro-F1 of classifiers; train regression models with "
                                        "train.py --problem-type regression"):
        load_grid_config(config)


def test_regression_metrics_against_hand_computed_values():
    from m2sa_training.evaluation.metrics import aggregate_runs, compute_regression_metrics, mean_baseline_predictions

    result = compute_regression_metrics([0, 1, 2, 3], [0.0, 1.0, 2.0, 5.0], ["en", "en", "de", "de"])
    overall, german = result["overall"], result["per_language"]["de"]
    assert (overall["mse"], overall["mae"], overall["support"]) == (1.0, 0.5, 4)
    assert overall["pearson"] == pytest.approx(0.9562, abs=1e-4) and overall["spearman"] == pytest.approx(1.0)
    assert (german["mse"], german["mae"]) == (2.0, 1.0)
    assert mean_baseline_predictions([0.5, -0.5, 0.3], 2) == pytest.approx([0.1, 0.1])
    constant = compute_regression_metrics([0, 1, 2], mean_baseline_predictions([0, 1, 2], 3), ["en"] * 3)
    assert constant["overall"]["pearson"] is None and constant["overall"]["mse"] == pytest.approx(2 / 3)
    aggregated = aggregate_runs([constant, compute_regression_metrics([0, 1, 2], [0, 1, 2], ["en"] * 3)])
    assert aggregated["problem_type"] == "regression" and aggregated["overall"]["pearson"]["values"] == pytest.approx([1.0])
    assert aggregated["overall"]["mse"]["mean"] == pytest.approx(1 / 3) and aggregated["overall"]["support"] == 6
    with pytest.raises(ValueError, match="labels must be finite numbers"):
        compute_regression_metrics([0, float("nan")], [0, 1], ["en", "en"])

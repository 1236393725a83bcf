"""Metrics against hand-computed values, aggregation over runs, the Markdown table and the written report."""

import json

import numpy as np
import pytest
from PIL import Image

from m2sa_training.evaluation.metrics import aggregate_runs, compute_metrics, majority_baseline_predictions
from m2sa_training.evaluation.reports import confusion_matrix_figure, metrics_table, write_evaluation_report


def test_perfect_predictions_score_one():
    labels = [0, 1, 2, 2, 1, 0]
    result = compute_metrics(labels, labels, ["en"] * 6)
    overall = result["overall"]
    assert [overall[name] for name in ("macro_f1", "macro_precision", "macro_recall", "accuracy")] == [1.0] * 4
    assert overall["support"] == 6 and isinstance(overall["support"], int)
    assert overall["confusion_matrix"] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert result["per_language"] == {"en": overall}


def test_all_wrong_predictions_score_zero():
    overall = compute_metrics([0, 1, 2], [1, 2, 0], ["en", "en", "en"])["overall"]
    assert overall["macro_f1"] == 0.0 and overall["accuracy"] == 0.0
    assert overall["confusion_matrix"] == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]


def test_absent_class_counts_as_zero_in_macro_averages():
    # Only negative and neutral occur. negative: P=2/3, R=1, F1=0.8; neutral: P=1, R=1/2, F1=2/3; positive: 0.
    overall = compute_metrics([0, 0, 1, 1], [0, 0, 1, 0], ["de"] * 4)["overall"]
    assert overall["macro_precision"] == pytest.approx((2 / 3 + 1) / 3)
    assert overall["macro_recall"] == pytest.approx((1 + 1 / 2) / 3)
    assert overall["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 3)
    assert overall["accuracy"] == pytest.approx(3 / 4)
    assert overall["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 0, 0]]


def test_per_language_metrics_are_sorted_and_separate():
    result = compute_metrics(np.array([2, 0, 2, 1, 1]), np.array([2, 0, 0, 1, 2]), ["es", "ar", "es", "ar", "ar"])
    assert list(result["per_language"]) == ["ar", "es"]
    arabic, spanish = result["per_language"]["ar"], result["per_language"]["es"]
    assert arabic["support"] == 3 and spanish["support"] == 2
    assert arabic["accuracy"] == pytest.approx(2 / 3) and spanish["accuracy"] == pytest.approx(1 / 2)
    # Arabic: negative F1=1, neutral P=1 R=1/2 F1=2/3, positive (predicted once, never true) F1=0.
    assert arabic["macro_f1"] == pytest.approx((1 + 2 / 3) / 3)
    assert spanish["confusion_matrix"] == [[0, 0, 0], [0, 0, 0], [1, 0, 1]]
    assert result["overall"]["support"] == 5
    assert all(isinstance(value, float) for value in (arabic["macro_f1"], arabic["accuracy"]))


@pytest.mark.parametrize(
    "labels, predictions, languages, message",
    [
        ([0, 1], [0], ["en", "en"], "same length"),
        ([], [], [], "empty"),
        ([0, 3], [0, 1], ["en", "en"], "labels must be label ids"),
        ([0, 1], [0, -1], ["en", "en"], "predictions must be label ids"),
        ([0, 1], [0, 1], ["en", None], "ISO codes"),
    ],
)
def test_bad_inputs_are_rejected(labels, predictions, languages, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(labels, predictions, languages)


def test_majority_baseline_uses_the_most_frequent_label_and_lowest_id_on_ties():
    assert majority_baseline_predictions([2, 1, 2, 0], 3) == [2, 2, 2]
    assert majority_baseline_predictions([2, 1, 1, 2], 2) == [1, 1]
    with pytest.raises(ValueError, match="empty"):
        majority_baseline_predictions([], 2)


def _two_runs():
    first = compute_metrics([0, 1, 2, 2], [0, 1, 2, 2], ["en", "en", "de", "de"])
    second = compute_metrics([0, 1, 2, 2], [0, 0, 2, 1], ["en", "en", "de", "de"])
    return first, second


def test_aggregate_runs_gives_mean_sample_std_and_sums():
    first, second = _two_runs()
    aggregated = aggregate_runs([first, second])
    accuracy = aggregated["overall"]["accuracy"]
    assert accuracy["values"] == [1.0, 0.5]
    assert accuracy["mean"] == pytest.approx(0.75)
    assert accuracy["std"] == pytest.approx(np.sqrt((0.25**2 + 0.25**2) / (2 - 1)))  # sample std, ddof=1
    assert aggregated["overall"]["support"] == 8
    assert aggregated["overall"]["num_runs"] == 2
    assert aggregated["overall"]["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 1, 3]]
    assert aggregated["per_language"]["de"]["accuracy"]["values"] == [1.0, 0.5]

    single = aggregate_runs([first])
    assert single["overall"]["macro_f1"] == {"mean": 1.0, "std": 0.0, "values": [1.0]}


def test_aggregate_runs_uses_only_the_runs_that_have_a_language():
    first, _ = _two_runs()
    with_french = compute_metrics([1, 0], [1, 1], ["fr", "en"])
    aggregated = aggregate_runs([first, with_french])
    assert list(aggregated["per_language"]) == ["de", "en", "fr"]
    french = aggregated["per_language"]["fr"]
    assert french["accuracy"] == {"mean": 1.0, "std": 0.0, "values": [1.0]}
    assert french["num_runs"] == 1 and french["support"] == 1
    assert aggregated["per_language"]["en"]["accuracy"]["values"] == [1.0, 0.0]
    with pytest.raises(ValueError, match="at least one"):
        aggregate_runs([])


def test_metrics_table_has_a_row_per_language_then_overall():
    multimodal = aggregate_runs([compute_metrics([0, 1, 2, 2], [0, 1, 2, 2], ["en", "en", "de", "de"])])
    majority = aggregate_runs([compute_metrics([0, 1], [0, 0], ["en", "en"])])
    table = metrics_table({"multimodal": multimodal, "majority": majority}, metric="accuracy")
    assert table.splitlines() == [
        "| language (accuracy) | multimodal | majority |",
        "|---|---|---|",
        "| de | 1.000 | – |",
        "| en | 1.000 | 0.500 |",
        "| overall | 1.000 | 0.500 |",
    ]


def test_metrics_table_formats_aggregated_results_with_std():
    aggregated = aggregate_runs(_two_runs())
    table = metrics_table({"multimodal": aggregated})
    assert table.splitlines()[0] == "| language (macro-F1) | multimodal |"
    # Run 1 is perfect (macro-F1 1); run 2 has per-class F1 2/3, 0, 2/3, so macro-F1 4/9.
    macro_f1 = aggregated["overall"]["macro_f1"]
    assert macro_f1["mean"] == pytest.approx(13 / 18) and macro_f1["std"] == pytest.approx((5 / 9) / np.sqrt(2))
    assert table.splitlines()[-1] == "| overall | 0.722 ± 0.393 |"
    with pytest.raises(ValueError, match="metric must be one of"):
        metrics_table({"multimodal": aggregated}, metric="support")


def test_write_evaluation_report_writes_json_markdown_and_plots(tmp_path):
    single = aggregate_runs([compute_metrics([0, 1, 2, 2, 1], [0, 1, 1, 2, 1], ["en", "en", "de", "de", "es"])])
    aggregated = aggregate_runs(_two_runs())
    results = {"validation": single, "test": aggregated}
    paths = write_evaluation_report(tmp_path / "report", results, title="Tiny run")

    assert set(paths) == {
        "json",
        "markdown",
        "per_language_f1_validation",
        "confusion_matrix_validation",
        "per_language_f1_test",
        "confusion_matrix_test",
    }
    assert paths["per_language_f1_test"].name == "per_language_f1_test.png"
    assert json.loads(paths["json"].read_text()) == results
    markdown = paths["markdown"].read_text()
    assert markdown.startswith("# Tiny run\n")
    assert "## validation" in markdown and "## test" in markdown
    assert "| language | macro-P | macro-R | macro-F1 | accuracy | support |" in markdown
    assert "| overall | 0.889 | 0.833 | 0.822 | 0.800 | 5 |" in markdown
    assert "| true / predicted | negative | neutral | positive |" in markdown
    assert "| neutral | 0 | 2 | 0 |" in markdown
    assert "summed over the runs" in markdown and "0.722 ± 0.393" in markdown
    for name, path in paths.items():
        if name not in ("json", "markdown"):
            with Image.open(path) as image:
                assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_write_evaluation_report_rejects_split_names_unfit_for_file_names(tmp_path):
    result = aggregate_runs([compute_metrics([0], [0], ["en"])])
    with pytest.raises(ValueError, match="Split names"):
        write_evaluation_report(tmp_path, {"../test": result}, title="x")


def test_confusion_matrix_title_fits_inside_the_figure():
    result = aggregate_runs([compute_metrics([0, 1, 2], [0, 1, 1], ["en"] * 3)])
    figure = confusion_matrix_figure(result, "M2SA multimodal (1 seed(s)): confusion matrix (validation)")
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    title = figure.axes[0].title.get_window_extent(renderer)
    assert figure.bbox.x0 <= title.x0 and title.x1 <= figure.bbox.x1


def test_labels_come_from_the_data():
    result = compute_metrics([0, 1], [0, 0], ["en", "en"], label_names=["bad", "good"])
    assert result["label_names"] == ["bad", "good"]
    assert result["overall"]["confusion_matrix"] == [[1, 0], [1, 0]]
    with pytest.raises(ValueError, match=r"label ids in \[0, 1\] \(bad, good\)"):
        compute_metrics([0, 2], [0, 0], ["en", "en"], label_names=["bad", "good"])

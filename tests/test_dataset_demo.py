"""The embedded demo set: Hub format, deterministic bytes, and a label that needs both text and image."""

import colorsys
from collections import Counter

import datasets
import numpy as np
import pytest

from dataset_script.demo import DEMO_LANGUAGES, LEXICON, build_demo_dataset, ensure_demo_dataset
from dataset_script.report import REPORT_FILE

NUM_TRAIN, NUM_EVAL = 450, 60


@pytest.fixture(scope="module")
def dataset_demo_dir(tmp_path_factory):
    return build_demo_dataset(tmp_path_factory.mktemp("demo") / "demo", num_train=NUM_TRAIN, num_eval=NUM_EVAL)


@pytest.fixture(scope="module")
def dataset_demo_all(dataset_demo_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return datasets.load_dataset(str(dataset_demo_dir), "all", cache_dir=str(cache))


def _text_cue(text: str, language: str) -> int:
    positive, negative, _, _ = (set(words.split()) for words in LEXICON[language])
    words = set(text.split())
    return 1 if words & positive else -1 if words & negative else 0


def _image_cue(image) -> int:
    red, green, blue = np.asarray(image.convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0) / 255
    hue, saturation, _ = colorsys.rgb_to_hsv(red, green, blue)
    if saturation < 0.2:
        return 0
    return 1 if 0.15 < hue < 0.5 else -1


def test_demo_has_a_config_per_language_and_all(dataset_demo_dir, dataset_demo_all):
    assert set(datasets.get_dataset_config_names(str(dataset_demo_dir))) == {"all", *DEMO_LANGUAGES}
    assert {split: rows.num_rows for split, rows in dataset_demo_all.items()} == {
        "train": NUM_TRAIN, "validation": NUM_EVAL, "test": NUM_EVAL,
    }  # fmt: skip
    train = dataset_demo_all["train"]
    assert train.features["label"].names == ["negative", "neutral", "positive"]
    assert set(train["language"]) == set(DEMO_LANGUAGES)
    assert set(Counter(train["label"])) == {0, 1, 2}


def test_label_needs_both_modalities(dataset_demo_all):
    """Every row with an image obeys label = sign(text cue + image cue), so neither cue alone decides it."""
    labels_by_text_cue = {cue: set() for cue in (-1, 0, 1)}
    labels_by_image_cue = {cue: set() for cue in (-1, 0, 1)}
    rows = dataset_demo_all["train"]
    missing = 0
    for row in rows:
        text_cue = _text_cue(row["text"], row["language"])
        if row["image"] is None:
            missing += 1
            continue
        image_cue = _image_cue(row["image"])
        assert row["label"] == int(np.sign(text_cue + image_cue)) + 1, row["text"]
        labels_by_text_cue[text_cue].add(row["label"])
        labels_by_image_cue[image_cue].add(row["label"])
    assert all(len(labels) >= 2 for labels in labels_by_text_cue.values())
    assert all(len(labels) >= 2 for labels in labels_by_image_cue.values())
    assert 0.05 < missing / rows.num_rows < 0.15


def test_demo_bytes_are_deterministic(dataset_demo_dir, tmp_path):
    again = build_demo_dataset(tmp_path / "again", num_train=NUM_TRAIN, num_eval=NUM_EVAL)
    files = sorted(p.relative_to(dataset_demo_dir) for p in dataset_demo_dir.rglob("*") if p.is_file())
    assert any(f.suffix == ".parquet" for f in files)
    assert all((dataset_demo_dir / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_ensure_demo_dataset_reuses_an_up_to_date_set_and_rebuilds_a_stale_one(tmp_path):
    path = tmp_path / "demo"
    ensure_demo_dataset(path, num_train=30, num_eval=6)
    report_stat = (path / REPORT_FILE).stat()
    ensure_demo_dataset(path, num_train=30, num_eval=6)
    assert (path / REPORT_FILE).stat().st_mtime_ns == report_stat.st_mtime_ns  # reused, not rebuilt
    ensure_demo_dataset(path, num_train=30, num_eval=6, seed=1)
    assert '"seed": 1' in (path / REPORT_FILE).read_text()


def test_ensure_demo_dataset_never_overwrites_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a dataset built by dataset_script"):
        ensure_demo_dataset(tmp_path, num_train=30, num_eval=6)
    assert (tmp_path / "notes.txt").read_text() == "mine"

"""The embedded demo set: Hub format, deterministic bytes, and a label that needs both text and image."""

import colorsys
import io
import math
from collections import Counter

import datasets
import numpy as np
import pytest
from PIL import Image

from dataset_script.demo import (
    DEMO_EXPECTED_ACCURACY, DEMO_LANGUAGES, LEXICON, build_demo_dataset, demo_examples, ensure_demo_dataset
)
from dataset_script.report import REPORT_FILE, read_report
from dataset_script.schema import LABEL_NAMES

NUM_TRAIN, NUM_EVAL = 450, 60
ORACLE_TRAIN, ORACLE_EVAL = 3000, 1000  # 2,000 held-out rows: 3 standard errors of an accuracy near 0.5 are 0.034


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
    # The median colour is the background's: the random shapes cover less than half of the image, but they
    # shift the mean colour of a grey image enough to look coloured.
    red, green, blue = np.median(np.asarray(image.convert("RGB"), dtype=float).reshape(-1, 3), axis=0) / 255
    hue, saturation, _ = colorsys.rgb_to_hsv(red, green, blue)
    if saturation < 0.3:  # grey backgrounds have saturation < 0.12, coloured ones > 0.45
        return 0
    return 1 if 0.15 < hue < 0.5 else -1  # green hues lie in 0.25..0.42, red ones within 0.04 of 0


def test_demo_has_a_config_per_language_and_all(dataset_demo_dir, dataset_demo_all):
    assert set(datasets.get_dataset_config_names(str(dataset_demo_dir))) == {"all", *DEMO_LANGUAGES}
    assert {split: rows.num_rows for split, rows in dataset_demo_all.items()} == {
        "train": NUM_TRAIN, "validation": NUM_EVAL, "test": NUM_EVAL,
    }  # fmt: skip
    train = dataset_demo_all["train"]
    assert train.features["label"].names == ["negative", "neutral", "positive"]
    assert set(train["language"]) == set(DEMO_LANGUAGES)
    # The labels the generator's cues define: label = sign(text cue + image cue) of the first NUM_TRAIN rows it drew
    # (seed 0: 145 negative, 135 neutral, 170 positive). Each label has probability 3/9, so each count lies within
    # 4 standard deviations (4 * sqrt(450 * 1/3 * 2/3) = 40) of 150.
    generated = demo_examples(NUM_TRAIN, NUM_EVAL)[:NUM_TRAIN]
    expected = Counter(int(np.sign(example.text_cue + example.image_cue)) + 1 for example in generated)
    assert Counter(train["label"]) == expected
    assert all(abs(count - NUM_TRAIN / 3) < 40 for count in expected.values()) and len(expected) == 3


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
    # A cue of one modality leaves two or three labels possible; the other modality decides between them.
    assert labels_by_text_cue == {-1: {0, 1}, 0: {0, 1, 2}, 1: {1, 2}}
    assert labels_by_image_cue == {-1: {0, 1}, 0: {0, 1, 2}, 1: {1, 2}}
    # The rows the generator left without an image (seed 0: 48), about 10 % of 450: within 4 standard deviations
    # (4 * sqrt(450 * 0.1 * 0.9) = 25) of 45.
    generated = demo_examples(NUM_TRAIN, NUM_EVAL)[:NUM_TRAIN]
    assert missing == sum(example.record.image is None for example in generated)
    assert abs(missing - 0.1 * NUM_TRAIN) < 25


def test_demo_bytes_are_deterministic(dataset_demo_dir, tmp_path):
    again = build_demo_dataset(tmp_path / "again", num_train=NUM_TRAIN, num_eval=NUM_EVAL)
    files = sorted(p.relative_to(dataset_demo_dir) for p in dataset_demo_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert sum(f.suffix == ".parquet" for f in files) == len(DEMO_LANGUAGES) * 3  # one shard per language and split
    assert all((dataset_demo_dir / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_ensure_demo_dataset_reuses_an_up_to_date_set_and_rebuilds_a_stale_one(tmp_path):
    path = tmp_path / "demo"
    ensure_demo_dataset(path, num_train=30, num_eval=6)
    report_stat = (path / REPORT_FILE).stat()
    ensure_demo_dataset(path, num_train=30, num_eval=6)
    assert (path / REPORT_FILE).stat().st_mtime_ns == report_stat.st_mtime_ns  # reused, not rebuilt
    ensure_demo_dataset(path, num_train=30, num_eval=6, seed=1)
    assert read_report(path)["build_parameters"]["seed"] == 1


def test_ensure_demo_dataset_never_overwrites_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a dataset built by dataset_script"):
        ensure_demo_dataset(tmp_path, num_train=30, num_eval=6)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def dataset_demo_cues_read():
    """Generated examples with the cues a perfect model reads: from the words of the text and the colour of the
    image (None when the row has no image). Generated directly, without building, to have enough rows."""
    read = []
    for example in demo_examples(ORACLE_TRAIN, ORACLE_EVAL):
        record = example.record
        image_cue = None if record.image is None else _image_cue(Image.open(io.BytesIO(record.image)))
        read.append((example, _text_cue(record.text, record.language), image_cue))
    return read


def test_planted_cues_are_what_text_and_image_show(dataset_demo_cues_read):
    misread = [
        (example.record.tweet_id, (example.text_cue, example.image_cue), (text_cue, image_cue))
        for example, text_cue, image_cue in dataset_demo_cues_read
        if text_cue != example.text_cue or image_cue not in (None, example.image_cue)
    ]
    assert misread == []
    assert all(
        example.record.label == LABEL_NAMES[int(np.sign(example.text_cue + example.image_cue)) + 1]
        for example, _, _ in dataset_demo_cues_read
    )


ORACLE_INPUTS = {
    "text_and_image": lambda text_cue, image_cue: (text_cue, image_cue),
    "text_only": lambda text_cue, image_cue: text_cue,
    "image_only": lambda text_cue, image_cue: image_cue,
    "majority": lambda text_cue, image_cue: None,
}


@pytest.mark.parametrize("oracle_input", list(ORACLE_INPUTS))
def test_documented_accuracy_is_what_a_cue_oracle_reaches(dataset_demo_cues_read, oracle_input):
    """An oracle that predicts, for what it reads, the most frequent train label reaches the documented accuracy
    on the held-out rows, within 3 standard errors of the held-out sample."""
    reads = ORACLE_INPUTS[oracle_input]
    labels_by_input = {}
    for example, text_cue, image_cue in dataset_demo_cues_read:
        if example.record.source_split == "train":
            labels_by_input.setdefault(reads(text_cue, image_cue), Counter())[example.record.label] += 1
    best_label = {seen: labels.most_common(1)[0][0] for seen, labels in labels_by_input.items()}
    held_out = [
        best_label[reads(text_cue, image_cue)] == example.record.label
        for example, text_cue, image_cue in dataset_demo_cues_read
        if example.record.source_split != "train"
    ]
    expected = DEMO_EXPECTED_ACCURACY[oracle_input]
    tolerance = 3 * math.sqrt(expected * (1 - expected) / len(held_out))
    assert len(held_out) == 2 * ORACLE_EVAL
    assert sum(held_out) / len(held_out) == pytest.approx(expected, abs=tolerance)

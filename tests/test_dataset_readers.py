"""UMSAB and MVSA readers on the real data in ../shared/data (skipped when absent) and on small faulty folders."""

import shutil
from collections import Counter
from pathlib import Path

import datasets
import pytest

from dataset_script.builder import build_dataset
from dataset_script.mvsa import decode_text, mvsa_records, mvsa_source
from dataset_script.umsab import decode_unicode_escapes, umsab_records, umsab_source

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared data {path} not found; these tests read the real UMSAB / MVSA samples")
    return path


def test_real_umsab_is_read_with_its_own_splits():
    records = list(umsab_records(_shared("umsab")))
    by_config_split = Counter((r.config, r.source_split) for r in records)
    assert {config for config, _ in by_config_split} == {f"umsab_{c}" for c in ("ar", "de", "en", "es", "fr", "hi", "it", "pt")}
    for language in ("de", "en", "hi"):
        # 1,838 + 323 newlines; the last line of each file has no newline, hence one more row.
        assert by_config_split[(f"umsab_{language}", "train")] == 1839
        assert by_config_split[(f"umsab_{language}", "validation")] == 324
    assert {r.label for r in records} == {"negative", "neutral", "positive"}
    assert all(r.image is None and r.text for r in records)
    english = [r.text for r in records if r.config == "umsab_en"]
    assert not any("\\u2019" in text for text in english) and any("\u2019" in text for text in english)


def test_unicode_escapes_are_decoded_including_surrogate_pairs():
    assert decode_unicode_escapes(r"i\u2019m here\u002c ok") == "i\u2019m here, ok"
    assert decode_unicode_escapes(r"smile \ud83d\ude00") == "smile \U0001F600"
    assert decode_unicode_escapes("plain text") == "plain text"


def test_umsab_faults_are_errors_or_reported(tmp_path):
    root = tmp_path / "umsab"
    folder = root / "german"
    folder.mkdir(parents=True)
    (folder / "train_text.txt").write_text("gut\nschlecht\n   \nsuper\n", encoding="utf-8")
    (folder / "train_labels.txt").write_text("2\n7\n1\n2\n", encoding="utf-8")
    report = build_dataset(tmp_path / "out", [umsab_source(root)], show_progress=False).to_dict()
    assert report["dropped_by_reason"] == {"empty_text": 1, "unknown_label": 1}
    assert report["rows_out"] == 2 and report["rows_in"] == 4

    (folder / "train_labels.txt").write_text("2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must match line by line"):
        list(umsab_records(root))
    (root / "klingon").mkdir()
    with pytest.raises(ValueError, match="Unknown UMSAB language folder"):
        umsab_records(root)


def test_build_where_no_row_survives_is_an_error_with_the_reasons(tmp_path):
    folder = tmp_path / "umsab" / "de"
    folder.mkdir(parents=True)
    (folder / "val_text.txt").write_text("  \n", encoding="utf-8")
    (folder / "val_labels.txt").write_text("1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="No input row could be kept.*empty_text"):
        build_dataset(tmp_path / "out", [umsab_source(tmp_path / "umsab")], show_progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial*"))


def test_real_mvsa_sample_builds_with_images(tmp_path):
    root = _shared("mvsa_sample")
    records = list(mvsa_records(root))
    assert len(records) == 400
    # MVSA's own labels: the `tag` column of labels.csv (232 positive, 130 negative, 38 neutral in the sample)
    tags = Counter(line.split(",")[1] for line in (root / "labels.csv").read_text().splitlines()[1:])
    assert Counter(r.label for r in records) == tags
    assert set(tags) == {"positive", "negative", "neutral"}
    assert all(r.text and r.fault is None and r.image is not None for r in records)
    gbk = next(r for r in records if r.tweet_id == "1079")  # a GBK-encoded text file
    assert "\u201c@mcnetthj" in gbk.text

    out = tmp_path / "mvsa"
    build_dataset(out, [mvsa_source(root)], show_progress=False)
    ds = datasets.load_dataset(str(out), "mvsa_en", cache_dir=str(tmp_path / "cache"))
    assert {split: rows.num_rows for split, rows in ds.items()} == {"train": 320, "validation": 40, "test": 40}
    row = ds["test"][0]
    assert row["image"].format == "JPEG" and row["language"] == "en" and row["source"] == "MVSA-Single"


def test_mvsa_faults_are_reported(tmp_path):
    root = _shared("mvsa_sample")
    copy = tmp_path / "mvsa"
    (copy / "data").mkdir(parents=True)
    guids = ["1004", "1079", "1038", "1045"]
    (copy / "labels.csv").write_text("guid,tag\n" + "".join(f"{g},positive\n" for g in guids) + "9999,neutral\n")
    for guid in guids:
        shutil.copy(root / "data" / f"{guid}.txt", copy / "data")
        shutil.copy(root / "data" / f"{guid}.jpg", copy / "data")
    (copy / "data" / "1038.txt").write_bytes(b"\xff\xfe\xfa\x80 not text")
    (copy / "data" / "1045.jpg").write_bytes(b"not a jpeg")
    report = build_dataset(tmp_path / "out", [mvsa_source(copy)], show_progress=False).to_dict()
    assert report["dropped_by_reason"] == {"missing_from_dump": 1, "undecodable_text": 1}
    assert report["warnings_by_reason"] == {"unreadable_image": 1}
    assert report["rows_in"] == 5 and report["rows_out"] == 3
    assert decode_text("caf\u00e9".encode("gbk")) == "caf\u00e9"


def test_mvsa_without_labels_csv_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        mvsa_records(tmp_path)
    (tmp_path / "labels.csv").write_text("id,label\n1,positive\n")
    with pytest.raises(ValueError, match="guid,tag"):
        list(mvsa_records(tmp_path))

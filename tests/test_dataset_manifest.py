"""Manifest + dump: a synthetic release covering every fault, built and loaded with `load_dataset(dir, config)`,
plus the reader on the real release manifest in ../shared/data (skipped when absent)."""

import io
import json
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import datasets
import pytest
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard
from PIL import Image

from dataset_script.builder import build_dataset
from dataset_script.dump import TweetDump
from dataset_script.manifest import manifest_source, read_manifest
from dataset_script.report import read_report
from dataset_script.schema import FEATURES, M2SA_LANGUAGES, translated_config

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_MANIFEST = SHARED_DATA / "m2sa" / "final_dataset.zip"

BASE_ID = 1222618809162444801  # > 2**53: a float would turn it into ...800
LABELS = ("negative", "neutral", "positive")


def _jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def _manifest_line(tweet_id: int, language: str, label) -> str:
    # tweetid as a bare JSON number, exactly as in the official release.
    label_json = json.dumps(label)
    return f'{{"tweetid":{tweet_id},"ds_language":"{language}","language":"{language}","label":{label_json}}}'


def write_release(root: Path) -> dict:
    """A manifest zip and a dump with every fault; returns the expected outcome."""
    de_ids = [BASE_ID + i for i in range(90)]  # 30 per label, all good
    en_ids = [BASE_ID + 1000 + i for i in range(30)]
    de_lines = [_manifest_line(tweet_id, "de", LABELS[i % 3]) for i, tweet_id in enumerate(de_ids)]
    faults = {
        "null_label": _manifest_line(BASE_ID + 500, "de", None),
        "unknown_label": _manifest_line(BASE_ID + 501, "de", "mixed"),
        "duplicate_same": _manifest_line(de_ids[0], "de", LABELS[0]),
        "duplicate_conflict": _manifest_line(de_ids[1], "de", "positive"),
        "missing_from_dump": _manifest_line(BASE_ID + 502, "de", "neutral"),
        "empty_text": _manifest_line(BASE_ID + 503, "de", "neutral"),
    }
    en_lines = [_manifest_line(tweet_id, "en", LABELS[i % 3]) for i, tweet_id in enumerate(en_ids)]
    mt_lines = [_manifest_line(tweet_id, "de", LABELS[i % 3]) for i, tweet_id in enumerate(en_ids[:12])]

    manifest = root / "final_dataset.zip"
    with zipfile.ZipFile(manifest, "w") as archive:
        archive.writestr("github_dataset/", "")
        archive.writestr("github_dataset/1.fake_source@train.json", "\n".join(de_lines[:60]) + "\n")
        archive.writestr("github_dataset/2.other_source@test.json", "\n".join(de_lines[60:] + list(faults.values()) + en_lines) + "\n")
        archive.writestr("github_dataset/de_mt.43.RETWEET_data@train_final_label.json", "\n".join(mt_lines) + "\n")

    dump = root / "dump"
    (dump / "images").mkdir(parents=True)
    (dump / "translations").mkdir()
    texts = [{"tweet_id": str(t), "text": f"Tweet number {t} heute"} for t in de_ids]
    texts += [{"tweet_id": t, "text": f"tweet {t} today"} for t in en_ids]  # ids as JSON numbers are fine too
    texts += [{"tweet_id": str(BASE_ID + 500), "text": "no label"}, {"tweet_id": str(BASE_ID + 501), "text": "odd label"}]
    texts += [{"tweet_id": str(BASE_ID + 503), "text": "   "}]
    (dump / "tweets.jsonl").write_text("\n".join(json.dumps(t) for t in texts) + "\n", encoding="utf-8")
    translations = [{"tweet_id": str(t), "text": f"Tweet {t} heute übersetzt"} for t in en_ids[:11]]  # one missing
    (dump / "translations" / "de.jsonl").write_text("\n".join(json.dumps(t) for t in translations), encoding="utf-8")
    jpeg = _jpeg((200, 30, 30))
    for tweet_id in de_ids[:40] + en_ids:
        (dump / "images" / f"{tweet_id}.jpg").write_bytes(jpeg)
    (dump / "images" / f"{de_ids[40]}.png").write_bytes(_png())
    (dump / "images" / f"{de_ids[41]}.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # truncated: unreadable
    return {
        "manifest": manifest,
        "dump": dump,
        "rows_in": len(de_lines) + len(faults) + len(en_lines) + len(mt_lines),
        "rows_out": len(de_ids) + len(en_ids) + 11,
        "dropped": {"null_label": 1, "unknown_label": 1, "duplicate_id": 2, "missing_from_dump": 2, "empty_text": 1},
        "unreadable_image_id": str(de_ids[41]),
        "png_id": str(de_ids[40]),
        "jpeg": jpeg,
        "png": _png(),
    }


@pytest.fixture(scope="module")
def dataset_release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    expected = write_release(root)
    out = root / "built"
    build_dataset(out, [manifest_source(expected["manifest"], expected["dump"])], show_progress=False)
    return out, expected


def _load(out, config, tmp_path, **kwargs):
    return datasets.load_dataset(str(out), config, cache_dir=str(tmp_path / "cache"), **kwargs)


def test_report_accounts_for_every_input_row(dataset_release):
    out, expected = dataset_release
    report = read_report(out)
    assert report["rows_in"] == expected["rows_in"]
    assert report["rows_out"] == expected["rows_out"]
    assert report["rows_dropped"] == sum(expected["dropped"].values()) == expected["rows_in"] - expected["rows_out"]
    assert report["dropped_by_reason"] == expected["dropped"]
    assert report["warnings_by_reason"] == {"unreadable_image": 1}
    assert report["warnings"][0]["tweet_id"] == expected["unreadable_image_id"]
    conflict = [row for row in report["dropped"] if row["reason"] == "duplicate_id" and "conflicting" in row["detail"]]
    assert len(conflict) == 1 and conflict[0]["tweet_id"] == str(BASE_ID + 1)
    missing = sorted(row["config"] for row in report["dropped"] if row["reason"] == "missing_from_dump")
    assert missing == ["de", "de_mt"]


def test_language_config_loads_with_expected_splits_features_and_counts(dataset_release, tmp_path):
    out, expected = dataset_release
    ds = _load(out, "de", tmp_path)
    assert list(ds) == ["train", "validation", "test"]
    assert ds["train"].features["label"].names == list(LABELS)
    assert isinstance(ds["train"].features["image"], datasets.Image)
    # 30 rows per label: 3 test, 3 validation, 24 train per label (10 % / 10 %, stratified).
    for split, per_label in (("train", 24), ("validation", 3), ("test", 3)):
        assert Counter(ds[split]["label"]) == {0: per_label, 1: per_label, 2: per_label}
    ids = [tweet_id for split in ds.values() for tweet_id in split["tweet_id"]]
    assert str(BASE_ID) in ids and len(ids) == len(set(ids)) == 90
    assert set(ds["train"]["language"]) == {"de"} and set(ds["train"]["source"]) == {"fake_source", "other_source"}


def test_images_are_original_bytes_and_unreadable_ones_become_none(dataset_release, tmp_path):
    out, expected = dataset_release
    ds = datasets.concatenate_datasets(list(_load(out, "de", tmp_path).values()))
    ds = ds.cast_column("image", datasets.Image(decode=False))
    by_id = {row["tweet_id"]: row["image"] for row in ds}
    assert by_id[expected["png_id"]] == {"bytes": expected["png"], "path": None}  # PNG kept as PNG
    assert by_id[str(BASE_ID)] == {"bytes": expected["jpeg"], "path": None}
    assert by_id[expected["unreadable_image_id"]] is None
    assert sum(image is not None for image in by_id.values()) == 41


def test_translated_config_and_all(dataset_release, tmp_path):
    out, expected = dataset_release
    assert set(datasets.get_dataset_config_names(str(out))) == {"all", "de", "en", "de_mt"}
    mt = datasets.concatenate_datasets(list(_load(out, "de_mt", tmp_path).values()))
    assert mt.num_rows == 11 and all(mt["translated"]) and set(mt["language"]) == {"de"}
    assert all(image is not None for image in mt["image"])  # shares the image of the original tweet
    en = _load(out, "en", tmp_path)
    split_of_en = {tweet_id: split for split, rows in en.items() for tweet_id in rows["tweet_id"]}
    for split, rows in _load(out, "de_mt", tmp_path).items():
        assert all(split_of_en[tweet_id] == split for tweet_id in rows["tweet_id"])
    everything = _load(out, "all", tmp_path)
    assert sum(rows.num_rows for rows in everything.values()) == 90 + 30  # de + en, not the translations
    assert not any(everything["train"]["translated"])


def test_streaming_reads_the_built_directory(dataset_release):
    out, _ = dataset_release
    streamed = datasets.load_dataset(str(out), "de", streaming=True)
    rows = list(streamed["validation"])
    assert Counter(row["label"] for row in rows) == {0: 3, 1: 3, 2: 3}
    assert all(isinstance(row["tweet_id"], str) and int(row["tweet_id"]) > 2**53 for row in rows)
    first_train = next(iter(streamed["train"]))
    assert first_train["tweet_id"] == str(BASE_ID) and first_train["image"].size == (16, 16)


def test_building_twice_gives_identical_files(dataset_release, tmp_path):
    out, expected = dataset_release
    again = tmp_path / "again"
    build_dataset(again, [manifest_source(expected["manifest"], expected["dump"])], show_progress=False)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((out / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_card_lists_configs_statistics_and_citation(dataset_release):
    out, _ = dataset_release
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "config_name: de_mt" in card and "config_name: all" in card
    assert "| de | train | 72 | 24 | 24 | 24 |" in card
    assert "Thakkar" in card and "missing_from_dump (dropped) | 2 |" in card


def test_card_yaml_declares_every_config_with_its_shards_and_features(dataset_release, tmp_path):
    out, _ = dataset_release
    metadata = DatasetCard.load(out / "README.md").data
    configs = {config["config_name"]: config for config in metadata["configs"]}
    assert set(configs) == {"all", "de", "de_mt", "en"}
    assert [name for name, config in configs.items() if config.get("default")] == ["all"]
    shards = {name: {files["split"]: files["path"] for files in config["data_files"]} for name, config in configs.items()}
    assert all((out / path).is_file() for splits in shards.values() for paths in splits.values() for path in paths)
    # `all` unites the original-language configs, never the translations.
    assert shards["all"] == {split: shards["de"][split] + shards["en"][split] for split in ("train", "validation", "test")}
    assert datasets.load_dataset_builder(str(out), cache_dir=str(tmp_path / "cache")).config.name == "all"

    infos = DatasetInfosDict.from_dataset_card_data(metadata)
    assert set(infos) == set(configs)
    assert all(info.features == FEATURES for info in infos.values())
    label_yaml = [feature for feature in metadata["dataset_info"][0]["features"] if feature["name"] == "label"]
    assert label_yaml == [
        {"name": "label", "dtype": {"class_label": {"names": {"0": "negative", "1": "neutral", "2": "positive"}}}}
    ]


def test_card_has_the_hubs_licence_size_and_task_fields_and_the_licence_file_it_links(dataset_release):
    out, _ = dataset_release
    metadata = DatasetCard.load(out / "README.md").data.to_dict()
    # the rows keep their sources' terms: an `other` licence, named, linked to the file that lists them
    assert (metadata["license"], metadata["license_name"]) == ("other", "m2sa-source-terms")
    assert (out / metadata["license_link"]).is_file()
    terms = (out / metadata["license_link"]).read_text(encoding="utf-8")
    assert "## M2SA release\n\nTweet ids and labels as released with the M2SA paper" in terms
    assert metadata["size_categories"] == ["n<1K"]  # 120 tweets and 11 translations
    assert metadata["task_categories"] == ["text-classification"]
    assert metadata["task_ids"] == ["sentiment-classification"]


@pytest.mark.parametrize(("rows", "category"), [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"),
                                                (264_600, "100K<n<1M"), (20_000_000, "10M<n<100M")])
def test_size_categories_follow_the_hubs_buckets(rows, category):
    from dataset_script.card import size_category

    assert size_category(rows) == category


@pytest.mark.parametrize(
    ("member", "content", "message"),
    [
        ("github_dataset/notes.txt", "", "Unexpected file"),
        ("github_dataset/1.src@f.json", '{"tweetid": 1, "ds_language": "de", "label": "positive"\n', "not a valid JSON line"),
        ("github_dataset/1.src@f.json", '{"tweetid": 1.5e18, "ds_language": "de", "label": "positive"}\n', "not an integer"),
        ("github_dataset/1.src@f.json", '{"tweetid": 1, "label": "positive"}\n', "ds_language"),
        ("github_dataset/hr_mt.1.src@f.json", '{"tweetid": 1, "ds_language": "de", "label": "positive"}\n', "hr_mt"),
    ],
)
def test_malformed_manifest_is_an_error_naming_the_line(tmp_path, member, content, message):
    manifest = tmp_path / "bad.zip"
    with zipfile.ZipFile(manifest, "w") as archive:
        archive.writestr(member, content)
    with pytest.raises(ValueError, match=message):
        list(read_manifest(manifest))


def _damaged_manifest(path: Path, compression: int) -> None:
    """A manifest whose member bytes changed after it was written (as a bad download or disk would change them)."""
    lines = "".join(_manifest_line(BASE_ID + i, "de", LABELS[i % 3]) for i in range(200))
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("github_dataset/1.src@f.json", lines)
        (info,) = archive.infolist()
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF  # middle of the member data
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_damaged_manifest_archive_is_reported_as_damaged_with_what_to_do(tmp_path, compression):
    manifest = tmp_path / "final_dataset.zip"
    _damaged_manifest(manifest, compression)
    with pytest.raises(ValueError) as raised:
        list(read_manifest(manifest))
    message = str(raised.value)
    assert message.startswith(f"Manifest {manifest} is damaged (in 'github_dataset/1.src@f.json'): ")
    assert "download the release's final_dataset.zip again" in message and "could not be decoded" not in message
    assert isinstance(raised.value.__cause__, (zipfile.BadZipFile, zlib.error))
    if compression == zipfile.ZIP_STORED:  # the bytes still inflate: only the checksum tells
        assert "Bad CRC-32" in message


def test_manifest_that_is_not_a_zip_archive_is_reported(tmp_path):
    manifest = tmp_path / "final_dataset.zip"
    manifest.write_bytes(b"<html>rate limited</html>")
    not_a_zip = r"cannot be opened as a zip archive: File is not a zip file\. .*download .* again"
    with pytest.raises(ValueError, match=not_a_zip):
        list(read_manifest(manifest))


def test_dump_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="tweets.jsonl"):
        TweetDump(tmp_path)
    (tmp_path / "tweets.jsonl").write_text('{"tweet_id": 1, "text": "a"}\n{"tweet_id": "1", "text": "b"}\n')
    with pytest.raises(ValueError, match="twice with different texts"):
        TweetDump(tmp_path)
    (tmp_path / "tweets.jsonl").write_text('{"tweet_id": 1, "text": "a"}\n')
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(b"x")
    (tmp_path / "images" / "1.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="Two images for tweet id 1"):
        TweetDump(tmp_path)


@pytest.fixture(scope="module")
def dataset_real_manifest_entries():
    if not REAL_MANIFEST.is_file():
        pytest.skip(f"real M2SA manifest not found at {REAL_MANIFEST} (shared data absent)")
    return list(read_manifest(REAL_MANIFEST))


def test_real_manifest_reader(dataset_real_manifest_entries):
    entries = dataset_real_manifest_entries
    assert len(entries) == 264_600
    assert sum(entry.label is None for entry in entries) == 50
    assert {entry.language for entry in entries} == set(M2SA_LANGUAGES)
    assert len({entry.language for entry in entries if entry.translated}) == 15
    assert all(entry.tweet_id.isdigit() for entry in entries)
    assert any(int(entry.tweet_id) > 2**53 for entry in entries)


def test_build_from_real_manifest_sample(dataset_real_manifest_entries, tmp_path):
    """Every null-label file of the release, plus the head of a few others, joined with a synthetic dump."""
    with zipfile.ZipFile(REAL_MANIFEST) as archive:
        members = [m for m in archive.namelist() if not m.endswith("/")]
        null_files = sorted({e.where.split(":")[1] for e in dataset_real_manifest_entries if e.label is None})
        heads = [m for m in members if m.endswith(("43.RETWEET_data@train_final_label.json", "122.twitter-15@Spanish_Twitter_sentiment.json"))]
        sample = tmp_path / "sample.zip"
        with zipfile.ZipFile(sample, "w") as out:
            for member in null_files:
                out.writestr(member, archive.read(member))
            for member in heads:
                out.writestr(member, b"\n".join(archive.read(member).splitlines()[:40]) + b"\n")
    entries = list(read_manifest(sample))
    dump = tmp_path / "dump"
    (dump / "translations").mkdir(parents=True)
    original_ids = sorted({e.tweet_id for e in entries if not e.translated})
    (dump / "tweets.jsonl").write_text("".join(json.dumps({"tweet_id": t, "text": f"tweet {t}"}) + "\n" for t in original_ids))
    for language in {e.language for e in entries if e.translated}:
        ids = sorted({e.tweet_id for e in entries if e.translated and e.language == language})
        (dump / "translations" / f"{language}.jsonl").write_text("".join(json.dumps({"tweet_id": t, "text": f"prijevod {t}"}) + "\n" for t in ids))

    report = build_dataset(tmp_path / "out", [manifest_source(sample, dump)], show_progress=False).to_dict()
    # Every text is in the dump: a labelled row is kept unless its id is already kept in its config.
    labelled = Counter(
        (translated_config(e.language) if e.translated else e.language, e.tweet_id) for e in entries if e.label is not None
    )
    assert report["rows_in"] == len(entries)
    assert report["rows_out"] == len(labelled)
    assert report["dropped_by_reason"] == {"null_label": 50, "duplicate_id": sum(n - 1 for n in labelled.values())}
    assert set(report["configs"]) == {"es", "en"} | {f"{lang}_mt" for lang in {e.language for e in entries if e.translated}}

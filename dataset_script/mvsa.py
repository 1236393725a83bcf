"""Reader of the MVSA folder layout (MVSA-Single): config `mvsa_en`.

Layout: `MVSA/labels.csv` with columns `guid,tag` (tag negative / neutral / positive) and `MVSA/data/<guid>.txt`
(the tweet, UTF-8 or GBK bytes) next to `MVSA/data/<guid>.jpg`. The guid is used as the tweet id. MVSA has no
splits of its own, so all three are carved from the tweet ids (see `splits.py`).
"""

import csv
from collections.abc import Iterator
from pathlib import Path

from dataset_script.schema import RowFault, Source, SourceInfo, TweetRecord, bibtex_citation

MVSA_CONFIG = "mvsa_en"
_TEXT_ENCODINGS = ("utf-8", "gbk")

MVSA_SOURCE_INFO = SourceInfo(
    name="MVSA-Single",
    description="Multi-View Sentiment Analysis dataset: English tweets with their images, one label per tweet.",
    license="Research use only, as distributed by the MVSA authors; tweets and images remain X/Twitter content.",
    citation=bibtex_citation("niu2016sentiment"),
)


def decode_text(raw: bytes) -> str | None:
    """The text of an MVSA file, tried as UTF-8 then GBK; None when it is neither."""
    for encoding in _TEXT_ENCODINGS:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _record(data_dir: Path, guid: str, tag: str) -> TweetRecord:
    text_path, image_path = data_dir / f"{guid}.txt", data_dir / f"{guid}.jpg"
    text, fault = None, None
    if not text_path.is_file():
        fault = RowFault("missing_from_dump", f"{text_path} not found")
    else:
        text = decode_text(text_path.read_bytes())
        if text is None:
            fault = RowFault("undecodable_text", f"{text_path} is neither {' nor '.join(_TEXT_ENCODINGS)}")
    return TweetRecord(
        tweet_id=guid,
        text=text.strip() if text is not None else None,
        label=tag,
        config=MVSA_CONFIG,
        language="en",
        source="MVSA-Single",
        image=image_path if image_path.is_file() else None,
        fault=fault,
    )


def _labelled_records(root: Path, labels_path: Path) -> Iterator[TweetRecord]:
    with open(labels_path, encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames is None or not {"guid", "tag"} <= set(reader.fieldnames):
            raise ValueError(f"{labels_path} must have the header 'guid,tag', found {reader.fieldnames}.")
        for row in reader:
            yield _record(root / "data", row["guid"].strip(), row["tag"].strip())


def mvsa_records(root: Path) -> Iterator[TweetRecord]:
    """Every row of `labels.csv`, in file order (the folder is checked now, rows are read lazily)."""
    root = Path(root)
    labels_path = root / "labels.csv"
    if not labels_path.is_file():
        raise FileNotFoundError(f"No labels.csv in {root}; an MVSA folder holds labels.csv and data/<guid>.txt|jpg.")
    return _labelled_records(root, labels_path)


def mvsa_source(root: Path) -> Source:
    return Source(MVSA_SOURCE_INFO, mvsa_records(root))

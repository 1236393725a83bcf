"""Reader of UMSAB / TweetEval text folders: text-only configs `umsab_<lang>`.

Layout: `UMSAB/<language>/{train,val,test}_text.txt` with matching `*_labels.txt` (one tweet, resp. one label
0 negative / 1 neutral / 2 positive, per line); `<language>` is an English name (`german`) or an ISO code.
The source's splits are kept (train -> train, val -> validation, test -> test); where it has no test file,
test is carved out of train (see `splits.py`). UMSAB has no tweet ids, so rows get the stable id
`umsab-<lang>-<split>-<line>`. Literal `\\uXXXX` escapes (left in the English SemEval texts) are decoded.
"""

import re
from collections.abc import Iterator
from pathlib import Path

from dataset_script.schema import LABEL_NAMES, Source, SourceInfo, TweetRecord, bibtex_citation

UMSAB_LANGUAGES = {
    "arabic": "ar", "english": "en", "french": "fr", "german": "de",
    "hindi": "hi", "italian": "it", "portuguese": "pt", "spanish": "es",
}  # fmt: skip
UMSAB_FILE_SPLITS = {"train": "train", "val": "validation", "test": "test"}
"""UMSAB's file prefix of each split (`val_text.txt`, `val_labels.txt`) and the split it becomes."""
UMSAB_LABEL_IDS = {str(label_id): label_id for label_id in range(len(LABEL_NAMES))}
"""The labels as UMSAB writes them, one per line of `*_labels.txt`: the ids of LABEL_NAMES (0 negative, 1 neutral,
2 positive)."""
_UNICODE_ESCAPES = re.compile(r"(?:\\u[0-9a-fA-F]{4})+")

UMSAB_SOURCE_INFO = SourceInfo(
    name="UMSAB",
    description=(
        "The Unified Multilingual Sentiment Analysis Benchmark of XLM-T (TweetEval format): text-only tweets "
        "with @user anonymisation, in 8 languages."
    ),
    license="Research use, following the terms of the original SemEval / shared-task datasets and of X/Twitter.",
    citation=bibtex_citation("barbieri-etal-2022-xlm"),
)


def decode_unicode_escapes(text: str) -> str:
    r"""`i\u2019m` -> `i’m`; runs of escapes are decoded together so surrogate pairs become one character."""

    def decode(match: re.Match) -> str:
        return match.group().encode("ascii").decode("unicode_escape").encode("utf-16", "surrogatepass").decode(
            "utf-16", "replace"
        )

    return _UNICODE_ESCAPES.sub(decode, text)


def _language_code(folder: Path) -> str:
    name = folder.name.lower()
    if name in UMSAB_LANGUAGES.values():
        return name
    if name not in UMSAB_LANGUAGES:
        raise ValueError(
            f"Unknown UMSAB language folder {folder}: name it with an ISO 639-1 code or one of "
            f"{sorted(UMSAB_LANGUAGES)}."
        )
    return UMSAB_LANGUAGES[name]


def umsab_split_files(folder: Path, file_split: str) -> tuple[Path, Path]:
    """(texts file, labels file) of one split (a key of UMSAB_FILE_SPLITS) of one UMSAB language folder."""
    return Path(folder) / f"{file_split}_text.txt", Path(folder) / f"{file_split}_labels.txt"


def read_lines(path: Path) -> list[str]:
    """The lines of a UMSAB file as written (a tweet's text, or its label)."""
    return Path(path).read_text(encoding="utf-8").splitlines()


def _language_records(folder: Path) -> Iterator[TweetRecord]:
    language = _language_code(folder)
    for file_split, split in UMSAB_FILE_SPLITS.items():
        text_path, label_path = umsab_split_files(folder, file_split)
        if not text_path.exists() and not label_path.exists():
            continue
        texts, labels = read_lines(text_path), read_lines(label_path)
        if len(texts) != len(labels):
            raise ValueError(
                f"{text_path} has {len(texts)} lines but {label_path} has {len(labels)}; "
                f"the files must match line by line."
            )
        for line_number, (text, label) in enumerate(zip(texts, labels), start=1):
            label = label.strip()
            yield TweetRecord(
                tweet_id=f"umsab-{language}-{split}-{line_number:06d}",
                text=decode_unicode_escapes(text.strip()),
                label=LABEL_NAMES[UMSAB_LABEL_IDS[label]] if label in UMSAB_LABEL_IDS else label,
                config=f"umsab_{language}",
                language=language,
                source="umsab",
                source_split=split,
            )


def umsab_records(root: Path) -> Iterator[TweetRecord]:
    """Every UMSAB row, language folders in name order (folders are checked now, rows are read lazily)."""
    root = Path(root)
    folders = sorted(path for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
    if not folders:
        expected, _ = umsab_split_files(root / "<language>", "train")
        raise FileNotFoundError(f"No UMSAB language folders in {root}; expected {expected}.")
    for folder in folders:
        _language_code(folder)
    return (record for folder in folders for record in _language_records(folder))


def umsab_source(root: Path) -> Source:
    return Source(UMSAB_SOURCE_INFO, umsab_records(root))

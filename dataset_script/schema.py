"""What one row of the M2SA dataset is: the record readers produce, the Hub features it is written with,
and the provenance a reader declares for the dataset card."""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import datasets

from modeling_m2sa.labels_m2sa import LABEL_NAMES, TRANSLATED_SUFFIX  # shared with the model

M2SA_LANGUAGES = (
    "ar", "bg", "bs", "da", "de", "en", "es", "fr", "hr", "hu", "it",
    "lv", "mt", "pl", "pt", "ru", "sq", "sr", "sv", "tr", "zh",
)  # fmt: skip
"""The 21 languages of the M2SA release (ISO 639-1), each a config of the built dataset."""

SPLITS = ("train", "validation", "test")

ALL_CONFIG = "all"
"""The config that unites every non-translated config of a build (the multilingual training set)."""

FEATURES = datasets.Features(
    {
        "tweet_id": datasets.Value("string"),
        "text": datasets.Value("string"),
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(LABEL_NAMES)),
        "language": datasets.Value("string"),
        "source": datasets.Value("string"),
        "translated": datasets.Value("bool"),
    }
)
"""Columns of every config. `tweet_id` is a string because tweet ids exceed 2^53; `image` holds the original
encoded bytes (`{"bytes": ..., "path": None}`) or is null for tweets without a (readable) image."""


@dataclass(frozen=True)
class RowFault:
    """Why a reader could not produce a usable row, e.g. `RowFault("missing_from_dump", "id not in tweets.jsonl")`."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class TweetRecord:
    """One input row as a reader yields it, before screening.

    `label` is the raw label of the source (screened against `LABEL_NAMES` later, so bad labels get reported);
    `image` is encoded image bytes, a path read when the row is written, or None; `source_split` is the split
    the source itself assigns (None when it has none); `fault` is set when the reader already knows the row
    is unusable (its text is then None).
    """

    tweet_id: str
    text: str | None
    label: str | None
    config: str
    language: str
    source: str
    translated: bool = False
    image: bytes | Path | None = None
    source_split: str | None = None
    fault: RowFault | None = None


@dataclass(frozen=True)
class SourceInfo:
    """Provenance of one input, shown in the dataset card."""

    name: str
    description: str
    license: str
    citation: str


@dataclass(frozen=True)
class Source:
    """An input of a build: its provenance and the records it yields (read lazily, once)."""

    info: SourceInfo
    records: Iterable[TweetRecord]


def bibtex_citation(key: str) -> str:
    """The BibTeX entry `key` of `citations.bib` (the papers of the inputs, kept as data next to this file)."""
    text = (Path(__file__).parent / "citations.bib").read_text(encoding="utf-8")
    for entry in text.strip().split("\n\n"):
        if entry.startswith("@") and entry.split("{", 1)[1].split(",", 1)[0] == key:
            return entry
    raise KeyError(f"No BibTeX entry {key!r} in dataset_script/citations.bib; add it there.")


M2SA_CITATION = bibtex_citation("thakkar-etal-2024-m2sa")
"""The M2SA paper, cited by every dataset card (and by model cards of models trained on the dataset)."""


def translated_config(language: str) -> str:
    """Config name of the machine-translated set of `language`, e.g. `de` -> `de_mt`."""
    return f"{language}{TRANSLATED_SUFFIX}"

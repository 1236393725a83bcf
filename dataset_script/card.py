"""The dataset card (`README.md`): YAML `configs:` that make `load_dataset(dir_or_repo, config)` work, plus
description, languages, statistics, schema, split rules, provenance and citations."""

from collections.abc import Sequence

from datasets import DatasetInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from dataset_script.report import DROP_REASONS, WARNING_REASONS, BuildReport
from dataset_script.schema import (
    ALL_CONFIG, FEATURES, LABEL_NAMES, M2SA_CITATION, SPLITS, TRANSLATED_SUFFIX, SourceInfo
)

ShardIndex = dict[str, dict[str, list[str]]]
"""config -> split -> shard paths relative to the dataset root (only splits that have rows)."""

_COLUMN_DESCRIPTIONS = {
    "tweet_id": "string; the tweet id (ids exceed 2^53, so never a number)",
    "text": "string; the tweet text (or its machine translation when `translated`)",
    "image": "image, nullable; the tweet's image as its original encoded bytes, null when there is none",
    "label": f"class label: {', '.join(f'{i} {name}' for i, name in enumerate(LABEL_NAMES))}",
    "language": "string; ISO 639-1 code of the config language",
    "source": "string; the original dataset the row comes from",
    "translated": "bool; true for the machine-translated `*_mt` sets",
}


def with_all_config(shards: ShardIndex) -> ShardIndex:
    """Add `all`: the union, per split, of every non-translated config (its shards are referenced, not copied)."""
    united: dict[str, list[str]] = {}
    for config in sorted(shards):
        if config.endswith(TRANSLATED_SUFFIX):
            continue
        for split, paths in shards[config].items():
            united.setdefault(split, []).extend(paths)
    ordered = {split: united[split] for split in SPLITS if split in united}
    return {ALL_CONFIG: ordered, **{config: shards[config] for config in sorted(shards)}}


LICENSE_FILE = "LICENSE.md"
"""Written beside the card: each source's licence or terms. The rows keep their sources' terms, so the card's licence
is `other`, named and linked to this file as the Hub asks."""
LICENSE_NAME = "m2sa-source-terms"
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"))
"""The Hub's `size_categories` buckets: (rows below, name); larger sets are "10M<n<100M"."""


def size_category(rows: int) -> str:
    """The Hub's `size_categories` value for a dataset of `rows` rows."""
    return next((name for limit, name in SIZE_CATEGORIES if rows < limit), "10M<n<100M")


def card_metadata(data_files: dict, infos: dict, default_config: str | None = None, **card_fields) -> DatasetCardData:
    """A dataset card's YAML metadata as `load_dataset` and the Hub read it: `card_fields` (licence, tags, ...), a
    `configs:` entry per config of `data_files` ({config: {split: path pattern(s)}}; `default_config` marked as the
    default) and `dataset_info:` per config of `infos` ({config: DatasetInfo}). Every M2SA dataset card is made here."""
    metadata = DatasetCardData(**card_fields)
    MetadataConfigs(
        {
            config: {
                "data_files": [{"split": split, "path": paths} for split, paths in splits.items()],
                **({"default": True} if config == default_config else {}),
            }
            for config, splits in data_files.items()
        }
    ).to_dataset_card_data(metadata)
    DatasetInfosDict(infos).to_dataset_card_data(metadata)
    return metadata


def card_data(shards: ShardIndex, languages: Sequence[str], pretty_name: str, rows: int) -> DatasetCardData:
    """The built dataset's card metadata: licence, size and Hub tags, one `configs:` entry per config (`all` the
    default) and the features of each config under `dataset_info:`, which `load_dataset` reads instead of inferring
    them from the shards. The task is sentiment classification of a tweet (its text and, when it has one, its
    image)."""
    return card_metadata(
        shards,
        {config: DatasetInfo(features=FEATURES) for config in shards},
        default_config=ALL_CONFIG,
        pretty_name=pretty_name,
        license="other",
        license_name=LICENSE_NAME,
        license_link=LICENSE_FILE,
        language=sorted(languages),
        size_categories=[size_category(rows)],
        task_categories=["text-classification"],
        task_ids=["sentiment-classification"],
        tags=["sentiment-analysis", "multimodal", "multilingual", "twitter", "image"],
    )


def _statistics_table(shards: ShardIndex, report: BuildReport) -> str:
    lines = ["| config | split | rows | " + " | ".join(LABEL_NAMES) + " | with image |", "|---" * 7 + "|"]
    members_of_all = [c for c in shards if c != ALL_CONFIG and not c.endswith(TRANSLATED_SUFFIX)]
    for config, splits in shards.items():
        counted = members_of_all if config == ALL_CONFIG else [config]
        for split in splits:
            labels = [sum(report.label_counts[c][split][name] for c in counted) for name in LABEL_NAMES]
            images = sum(report.image_counts[c][split] for c in counted)
            lines.append(f"| {config} | {split} | {sum(labels)} | " + " | ".join(map(str, labels)) + f" | {images} |")
    return "\n".join(lines)


def _report_summary(report: BuildReport) -> str:
    summary = report.to_dict()
    lines = [
        f"Rows in: {summary['rows_in']}; rows written: {summary['rows_out']}; rows dropped: "
        f"{summary['rows_dropped']} (rows in = rows written + rows dropped). Rows kept with a warning "
        f"(counted in rows written): {summary['rows_kept_with_warning']}.",
        "",
        "| reason | rows | meaning |",
        "|---|---|---|",
    ]
    for reason, meaning in DROP_REASONS.items():
        lines.append(f"| {reason} (dropped) | {summary['dropped_by_reason'].get(reason, 0)} | {meaning} |")
    for reason, meaning in WARNING_REASONS.items():
        lines.append(f"| {reason} (kept) | {summary['warnings_by_reason'].get(reason, 0)} | {meaning} |")
    lines += ["", "Every dropped or warned row is listed with its tweet id and detail in `build_report.json`."]
    return "\n".join(lines)


def render_license(sources: Sequence[SourceInfo]) -> str:
    """`LICENSE.md`: the terms each source's rows are under (what the card's `license_link` points to)."""
    terms = "\n\n".join(f"## {info.name}\n\n{info.license}" for info in sources)
    return (f"# Terms of use\n\nThe rows of this dataset keep the licence or terms of the source they come from "
            f"(its `source` column):\n\n{terms}\n")


def render_card(
    shards: ShardIndex,
    report: BuildReport,
    sources: Sequence[SourceInfo],
    languages: Sequence[str],
    pretty_name: str,
    summary: str = "",
) -> str:
    """The full README.md of a built dataset; `shards` must already include `all` (see `with_all_config`)."""
    example_config = next((c for c in shards if c != ALL_CONFIG), ALL_CONFIG)
    schema_rows = "\n".join(f"| `{name}` | {_COLUMN_DESCRIPTIONS[name]} |" for name in FEATURES)
    source_sections = "\n\n".join(
        f"### {info.name}\n\n{info.description}\n\nLicence / terms: {info.license}\n\n```bibtex\n{info.citation}\n```"
        for info in sources
    )
    return f"""---
{card_data(shards, languages, pretty_name, report.rows_out).to_yaml()}
---

# {pretty_name}

Multimodal (text + image), multilingual sentiment analysis of tweets, in the format of the M2SA project:
every row is a tweet with its text, its image (when it has one) and a negative / neutral / positive label.

{summary}

## Loading

```python
from datasets import load_dataset

ds = load_dataset("<this repo or directory>", "{example_config}")   # train / validation / test
everything = load_dataset("<this repo or directory>", "all")         # every non-translated config
streamed = load_dataset("<this repo or directory>", "{example_config}", streaming=True)
```

## Configs and languages

Configs: {", ".join(f"`{c}`" for c in shards)}. A plain language code (`de`) is that language's set,
`<lang>_mt` its machine-translated set, `umsab_<lang>` / `mvsa_en` the text-only UMSAB and the MVSA-Single
inputs, and `all` unites every config that is not machine-translated. Languages: {", ".join(sorted(languages))}.

## Schema

| column | type and meaning |
|---|---|
{schema_rows}

## Splits

Splits are fixed and derived from the tweet id alone (no random seed): a split the source provides is kept;
the splits it lacks are carved from its train rows per label, ordering rows by a BLAKE2b hash of the tweet id
(10 % test, 10 % validation). A tweet id gets one split in the whole build, so translated copies of a tweet
share its split. A split with no rows is left out of a config.

## Statistics

{_statistics_table(shards, report)}

## Build report

{_report_summary(report)}

## Sources and licences

Each row keeps the terms of its source ({LICENSE_FILE} lists them).

{source_sections}

## Citation

```bibtex
{M2SA_CITATION}
```
"""

"""The configs to train on, each read into the training schema, and the three splits they make together."""

import logging
import re

import datasets

from dataset_script.schema import ALL_CONFIG, M2SA_LANGUAGES, SPLITS, TRANSLATED_SUFFIX
from modeling_m2sa.configuration_m2sa import REGRESSION
from modeling_m2sa.errors_m2sa import M2SAError

from .carving import carve_missing_splits
from .columns import canonical_splits, source_columns, training_columns
from .labels import numeric_labels, relabel
from .opening import DEFAULT_CONFIG, config_description, data_root, open_config

logger = logging.getLogger(__name__)


UNDETERMINED_LANGUAGE = "und"
"""ISO 639-2 "undetermined": the language of rows of a `default`-only dataset without a language column."""

LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
"""An ISO 639 code (639-1 or 639-3), as a row's language is when it names one."""


def resolve_configs(languages, include_translated, available, dataset_config=None):
    """`(configs, translated_for_training)`: the configs to load, checked against the `available` ones.

    `configs` are `dataset_config` when given, else the configs `languages` names ("all", ISO codes, `*_mt` sets or
    any config of the dataset); a dataset whose only config is `default` uses it when `languages` is the default
    `["all"]`. With `include_translated`, the `*_mt` sets of the chosen languages (of every language for "all") are
    added as `translated_for_training`: extra training rows, while validation and test stay the real tweets. A `*_mt`
    set named outright is an ordinary config (its validation and test are read too)."""
    if dataset_config is None and languages == [ALL_CONFIG] and available == [DEFAULT_CONFIG]:
        return [DEFAULT_CONFIG], []
    configs = []
    for name in dataset_config or languages:
        if name not in available:
            base = name.removesuffix(TRANSLATED_SUFFIX)
            if dataset_config is None and name != ALL_CONFIG and base not in M2SA_LANGUAGES:
                raise M2SAError(
                    f"Unknown language code {name!r}. Use 'all' or one of the M2SA languages: "
                    f"{', '.join(M2SA_LANGUAGES)} (add '_mt' for a machine-translated set), or a config of the "
                    f"dataset: {', '.join(sorted(available))}.",
                    code="unknown_language",
                )
            raise M2SAError(
                f"The dataset has no config {name!r}. Its configs: {', '.join(sorted(available))}; choose some with "
                f"--dataset-config.",
                code="unknown_config",
            )
        configs.append(name)
    if not include_translated:
        return configs, []
    if ALL_CONFIG in configs:
        translated = [name for name in sorted(available) if name.endswith(TRANSLATED_SUFFIX)]
    else:
        translated = [f"{name}{TRANSLATED_SUFFIX}" for name in configs if f"{name}{TRANSLATED_SUFFIX}" in available]
    return configs, [name for name in translated if name not in configs]


def load_training_splits(dataset, configs, options, translated_for_training=()):
    """train / validation / test of the `configs` of `dataset` in the training schema, concatenated over the configs;
    images left encoded (decoded per batch). The `translated_for_training` configs add train rows only. Column names
    and label names come from `options`."""
    parts = {split: [] for split in SPLITS}
    for config in [*configs, *translated_for_training]:
        for split, part in load_config(dataset, config, options).items():
            if split == "train" or config not in translated_for_training:
                parts[split].append(part)
    if translated_for_training:
        logger.info("Training on %s as well (machine-translated; train rows only, validation and test are the real "
                    "tweets of %s).", ", ".join(translated_for_training), ", ".join(configs))
    splits = datasets.DatasetDict({split: _concatenate(parts[split]) for split in SPLITS})
    if options.max_train_samples is not None:
        splits["train"] = splits["train"].select(range(min(options.max_train_samples, len(splits["train"]))))
    for split, part in splits.items():
        if len(part) == 0:
            raise M2SAError(
                f"The {split} split of {', '.join(configs)} is empty; choose configs that have data (--languages or "
                f"--dataset-config), or add {split} rows to the dataset.",
                code="empty_split",
            )
    return splits


def training_languages(train_split):
    """The languages of `train_split`'s rows as a model's config records them (`training_languages`): sorted ISO codes,
    `<code>_mt` for machine-translated rows; a row whose language is undetermined, or no language code, adds none."""
    languages = train_split["language"]
    translated = train_split["translated"] if "translated" in train_split.column_names else [False] * len(languages)
    codes = {f"{language}{TRANSLATED_SUFFIX}" if was_translated else language
             for language, was_translated in zip(languages, translated)}
    return sorted(code for code in codes if LANGUAGE_CODE.fullmatch(code.removesuffix(TRANSLATED_SUFFIX))
                  and code != UNDETERMINED_LANGUAGE)


def load_config(dataset, config, options):
    """One config of `dataset` in the training schema: {"train", "validation", "test": Dataset}."""
    where = config_description(dataset, config)
    loaded = canonical_splits(open_config(dataset, config, where), where)
    columns = {name: source_columns(split, options, f"the {name} split of {where}") for name, split in loaded.items()}
    language = None
    if columns["train"]["language"] is None:
        language = UNDETERMINED_LANGUAGE if config == DEFAULT_CONFIG else config
        logger.info("%s has no %r column: every row's language is %r (read a column with --language-column).",
                    where, options.language_column, language)
    if columns["train"]["image"] is None:
        logger.info("%s has no %r column: text-only data (name its image column with --image-column).",
                    where, options.image_column)
    root = data_root(dataset)
    splits = {name: training_columns(split, columns[name], language, root, f"the {name} split of {where}")
              for name, split in loaded.items()}  # fmt: skip
    if options.problem_type == REGRESSION:
        splits = numeric_labels(splits, where, options.label_column)
    else:
        splits = relabel(splits, options.label_names, where, options.label_column)
    return carve_missing_splits(splits, where, columns["train"]["tweet_id"],
                                 by_label=options.problem_type != REGRESSION)


def _concatenate(parts):
    """One dataset from the configs' parts of a split: when some configs have images and others do not, the others
    get a null image column; other columns only some configs have (`tweet_id`, provenance) are left out."""
    if any("image" in part.column_names for part in parts) and not all("image" in part.column_names for part in parts):
        parts = [part if "image" in part.column_names
                 else part.add_column("image", [None] * len(part), feature=datasets.Image(decode=False))
                 for part in parts]  # fmt: skip
    common = set.intersection(*(set(part.column_names) for part in parts))
    parts = [part if common == set(part.column_names) else part.select_columns(sorted(common)) for part in parts]
    return datasets.concatenate_datasets(parts)

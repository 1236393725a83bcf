"""Any sentiment dataset as training data: opened, its configs chosen, and read into the columns training reads.

`--dataset` is a Hub id, a directory (built by `dataset_script/`, or any folder `datasets.load_dataset` reads: Parquet,
CSV or JSON shards, an image folder with metadata.csv) or one data file. Whatever its shape, every chosen config is
read into the M2SA schema, so the collator, metrics and reports downstream read one set of names:

- `text`: string (a null text becomes "", with a warning);
- `image`: `datasets.Image(decode=False)`, null for a tweet without an image; absent for text-only data;
- `label`: ClassLabel(LABEL_NAMES), read from ClassLabel names, label strings or integers (`label_mapping`); with
  `--problem-type regression`, float32 values read from numbers (`_numeric_labels`);
- `language`: string, from the language column, else the config name;
- `tweet_id`: string, when the data has an id column (`ID_COLUMNS`);
- `source`, `translated`: as they are, when present (`PROVENANCE_COLUMNS`).

Splits are train / validation / test (aliases such as `dev` renamed). A config without validation or test rows gets
them carved from its train rows by the dataset builder's rule (`dataset_script.splits.carve_splits`; per label for
classes, from all rows at once for regression values). Whatever cannot
be read this way stops with an `M2SAError` naming the input and the flag to use, before any training time is spent.
"""

import hashlib
import logging
import math
import re
from collections import Counter
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from dataset_script.schema import ALL_CONFIG, LABEL_NAMES, M2SA_LANGUAGES, SPLITS, TRANSLATED_SUFFIX
from dataset_script.splits import CARVED_FRACTIONS, carve_splits
from modeling_m2sa.configuration_m2sa import REGRESSION
from modeling_m2sa.errors_m2sa import M2SAError

from ..processes import process_state

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "default"
"""The config `datasets` gives a dataset that names none (a folder of data files, a single file)."""

UNDETERMINED_LANGUAGE = "und"
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
"""An ISO 639 code (639-1 or 639-3), as a row's language is when it names one."""
"""ISO 639-2 "undetermined": the language of rows of a `default`-only dataset without a language column."""

FILE_BUILDERS = {".parquet": ("parquet", {}), ".csv": ("csv", {}), ".tsv": ("csv", {"sep": "\t"}),
                 ".json": ("json", {}), ".jsonl": ("json", {})}  # fmt: skip
"""The `datasets` builder, and its arguments, that reads a single data file, by the file's suffix."""

SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "development": "validation"}

ID_COLUMNS = ("tweet_id", "id", "guid")
"""Columns that identify a row, in order of preference; they order the rows when validation and test are carved."""

PROVENANCE_COLUMNS = ("source", "translated")
"""Columns of M2SA builds kept as they are when present: where a row comes from (e.g. the synthetic demo set)."""

LABEL_SPELLINGS = {"negative": ("negative", "neg", "-1"), "neutral": ("neutral", "neu", "0"),
                   "positive": ("positive", "pos", "1")}  # fmt: skip
"""How label names and strings may spell each class (compared lower-cased, without surrounding spaces)."""

LABEL_IDS = {spelling: LABEL_NAMES.index(name) for name, spellings in LABEL_SPELLINGS.items() for spelling in spellings}

ACCEPTED_LABELS = (
    "ClassLabel names or strings negative/neutral/positive, neg/neu/pos or -1/0/1 (any case), integers -1/0/1; "
    "name integer labels 0, 1, 2, ... with --label-names (e.g. --label-names negative neutral positive), or read "
    "another column with --label-column"
)


def demo_dataset_path(cache_dir):
    """The embedded demo set under `cache_dir`, generated on first use (seconds) by the main process only."""
    from dataset_script.demo import ensure_demo_dataset

    with process_state().main_process_first():
        return str(ensure_demo_dataset(Path(cache_dir) / "demo-dataset"))


def dataset_configs(dataset):
    """The config names of `dataset`; a single data file has one, `default`."""
    if Path(dataset).is_file():
        _file_builder(Path(dataset))  # an unreadable suffix is refused here, before anything is loaded
        return [DEFAULT_CONFIG]
    try:
        return datasets.get_dataset_config_names(dataset)
    except Exception as error:  # datasets raises several types for "not there"; all mean the same to the user
        raise M2SAError(
            f"Could not open the dataset {dataset!r} ({type(error).__name__}: {error}). Pass a Hub dataset id (needs "
            f"network access), a local directory (built with `python dataset_script/build.py`, or any folder "
            f"`datasets.load_dataset` reads) or a data file ending in {', '.join(FILE_BUILDERS)}.",
            code="dataset_not_found",
        ) from error


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
    loaded = _canonical_splits(_open(dataset, config, where), where)
    columns = {name: _source_columns(split, options, f"the {name} split of {where}") for name, split in loaded.items()}
    language = None
    if columns["train"]["language"] is None:
        language = UNDETERMINED_LANGUAGE if config == DEFAULT_CONFIG else config
        logger.info("%s has no %r column: every row's language is %r (read a column with --language-column).",
                    where, options.language_column, language)
    if columns["train"]["image"] is None:
        logger.info("%s has no %r column: text-only data (name its image column with --image-column).",
                    where, options.image_column)
    root = data_root(dataset)
    splits = {name: _training_columns(split, columns[name], language, root, f"the {name} split of {where}")
              for name, split in loaded.items()}  # fmt: skip
    if options.problem_type == REGRESSION:
        splits = _numeric_labels(splits, where, options.label_column)
    else:
        splits = _relabel(splits, options.label_names, where, options.label_column)
    return _carve_missing_splits(splits, where, columns["train"]["tweet_id"],
                                 by_label=options.problem_type != REGRESSION)


def _file_builder(path):
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise M2SAError(
            f"Cannot read {str(path)!r}: a data file must end in {', '.join(FILE_BUILDERS)}. Convert it, or pass a "
            f"directory that `datasets.load_dataset` reads.",
            code="unsupported_file",
        )
    return builder


def config_description(dataset, config):
    """How messages name one config of `dataset` (the `default` config of a folder or file is the dataset itself)."""
    return repr(dataset) if config == DEFAULT_CONFIG else f"{dataset!r} (config {config!r})"


def split_names(dataset, config):
    """The split names of one config of `dataset`, from its data files (nothing is downloaded); a single data file
    has one split, `train`."""
    if Path(dataset).is_file():
        return ["train"]
    return list(datasets.load_dataset_builder(dataset, config).config.data_files or {})


def open_split(dataset, config, split, streaming=False):
    """One split of one config, as `datasets` reads it: a `Dataset`, or with `streaming` an `IterableDataset` (rows
    read as they are iterated, for corpora larger than the disk)."""
    where = config_description(dataset, config)
    return _open(dataset, config, where, split=split, streaming=streaming)


def _open(dataset, config, where, **load_options):
    """All splits of one config (or the one split `load_options` names), as `datasets` reads them (a single file
    through the builder of its suffix)."""
    path = Path(dataset)
    try:
        if path.is_file():
            builder, arguments = _file_builder(path)
            return datasets.load_dataset(builder, data_files=str(path), **arguments, **load_options)
        return datasets.load_dataset(dataset, config, **load_options)
    except datasets.exceptions.DatasetGenerationError as error:
        damaged = _damaged_parquet_file(dataset, config)
        if damaged is None:
            raise
        file, reason = damaged
        raise M2SAError(
            f"The data file {str(file)!r} of {where} is damaged (a truncated or corrupt Parquet shard: {reason}). "
            f"Rebuild the dataset with `python dataset_script/build.py --out {dataset}` and the inputs it was built "
            f"from (--demo for the demo set), or download it again.",
            code="damaged_data_file",
        ) from error
    except ValueError as error:
        # `datasets` refuses a dataset with an empty split, without saying which dataset.
        empty = re.fullmatch(r'Instruction "(.+)" corresponds to no data!', str(error))
        if empty is None:
            raise
        raise M2SAError(
            f"The {empty[1]} split of {where} is empty. Add rows to it, or remove it: a missing validation or test "
            f"split is carved from train.",
            code="empty_split",
        ) from error


def _damaged_parquet_file(dataset, config):
    """(path, reason) of the first local Parquet file of `config` that cannot be read whole, or None."""
    if Path(dataset).is_file():
        files = [Path(dataset)]
    else:
        data_files = datasets.load_dataset_builder(dataset, config).config.data_files or {}
        files = [Path(file) for split_files in data_files.values() for file in split_files]
    for file in files:
        if file.suffix != ".parquet" or not file.is_file():  # Hub files are checked by their download
            continue
        try:
            shard = pq.ParquetFile(file)
            for row_group in range(shard.num_row_groups):
                shard.read_row_group(row_group)
        except (pa.ArrowException, OSError) as error:
            return file, f"{type(error).__name__}: {error}"
    return None


def data_root(dataset):
    """Where relative image paths of a local dataset start (None for a Hub dataset)."""
    path = Path(dataset)
    if path.is_file():
        return path.parent
    return path if path.is_dir() else None


def _canonical_splits(loaded, where):
    """The train / validation / test splits of `loaded`, found under their names or aliases (`SPLIT_ALIASES`)."""
    splits, ignored = {}, []
    for name, split in loaded.items():
        canonical = SPLIT_ALIASES.get(name.lower(), name.lower())
        if canonical not in SPLITS:
            ignored.append(name)
        elif canonical in splits:
            raise M2SAError(f"{where} has two {canonical} splits ({', '.join(loaded)}); keep one of them.",
                            code="duplicate_split")
        else:
            splits[canonical] = split
    if "train" not in splits:
        raise M2SAError(
            f"{where} has no train split (its splits: {', '.join(loaded)}). Training needs one; validation and test "
            f"are carved from it when missing.",
            code="no_train_split",
        )
    if ignored:
        logger.warning("%s: split(s) %s ignored: only train, validation and test (or %s) are used.",
                       where, ", ".join(ignored), ", ".join(SPLIT_ALIASES))
    return splits


def _source_columns(split, options, where):
    """{schema column: the dataset column it is read from, or None when absent}, for text, image, label, language,
    tweet_id and the provenance columns. The image and language columns may be absent only under their default names."""
    present = split.column_names
    flags = {"text": "--text-column", "image": "--image-column", "label": "--label-column",
             "language": "--language-column"}  # fmt: skip
    columns = {}
    for target, flag in flags.items():
        name = getattr(options, f"{target}_column")
        if name in present:
            columns[target] = name
        elif target in ("image", "language") and name == target:  # the default name: text-only data / config names
            columns[target] = None
        else:
            raise M2SAError(
                f"There is no column {name!r} for the {target} in {where} (its columns: {', '.join(present)}). Name "
                f"the {target} column with {flag}.",
                code="missing_column",
            )
    used = set(columns.values())
    columns["tweet_id"] = next((name for name in ID_COLUMNS if name in present and name not in used), None)
    columns.update({name: name if name in present and name not in used else None for name in PROVENANCE_COLUMNS})
    return columns


def _training_columns(split, columns, language, root, where):
    """`split` with only the schema columns, under their schema names and types (labels still as in the data)."""
    sources = {target: source for target, source in columns.items() if source is not None}
    split = split.select_columns(list(sources.values()))
    split = split.rename_columns({source: target for target, source in sources.items() if source != target})
    split = _text_column(split, where)
    if "image" in split.column_names:
        split = _image_column(split, columns["image"], root, where)
    if language is not None:
        split = split.add_column("language", [language] * len(split), feature=datasets.Value("string"))
    elif split.data.column("language").null_count:
        raise M2SAError(
            f"{split.data.column('language').null_count} rows of {where} have no language in column "
            f"{columns['language']!r}. Fill it in, or name another column with --language-column.",
            code="missing_language",
        )
    for name in ("language", "tweet_id"):
        if name in split.column_names and split.features[name] != datasets.Value("string"):
            split = split.cast_column(name, datasets.Value("string"))
    return split


def _text_column(split, where):
    feature = split.features["text"]
    if not isinstance(feature, datasets.Value):
        raise M2SAError(
            f"The text column of {where} holds {feature}, not text. Name the text column with --text-column.",
            code="bad_text_column",
        )
    if feature != datasets.Value("string"):
        split = split.cast_column("text", datasets.Value("string"))
    missing = split.data.column("text").null_count
    if missing:
        logger.warning("%d rows of %s have no text; they are used with an empty text.", missing, where)
        texts = ["" if text is None else text for text in split["text"][:]]
        split = split.remove_columns("text").add_column("text", texts, feature=datasets.Value("string"))
    return split


def _image_column(split, source, root, where):
    """The image column as `datasets.Image(decode=False)`: an Image column, encoded bytes, or paths of existing files
    (relative paths start at the dataset's directory). Unreadable bytes are found per batch during training."""
    feature = split.features["image"]
    encoded = (datasets.Value("binary"), datasets.Value("large_binary"))
    image_struct = isinstance(feature, dict) and set(feature) == {"bytes", "path"}  # an Image column without its type
    if isinstance(feature, datasets.Image) or image_struct or feature in encoded:
        return split.cast_column("image", datasets.Image(decode=False))
    if feature not in (datasets.Value("string"), datasets.Value("large_string")):
        raise M2SAError(
            f"The image column {source!r} of {where} holds {feature} values, not images. Name the column holding the "
            f"images (an Image column, image bytes or image file paths) with --image-column.",
            code="bad_image_column",
        )
    values = split["image"][:]
    paths = [None if value is None else _existing_file(value, root) for value in values]
    not_files = [value for value, path in zip(values, paths) if value is not None and path is None]
    if not_files:
        examples = ", ".join(map(repr, list(dict.fromkeys(not_files))[:3]))
        raise M2SAError(
            f"The image column {source!r} of {where} holds strings that are not paths of existing files: "
            f"{len(not_files)} of {len(values)} rows, e.g. {examples}. Name the column holding the images (an Image "
            f"column, image bytes or image file paths, relative to the dataset's directory) with --image-column.",
            code="bad_image_column",
        )
    split = split.remove_columns("image").add_column("image", paths, feature=datasets.Value("string"))
    return split.cast_column("image", datasets.Image(decode=False))


def _existing_file(value, root):
    """The absolute path of the file `value` names (relative to `root`, else to the working directory), or None."""
    path = Path(value)
    candidates = [path] if path.is_absolute() else [*([root / path] if root is not None else []), path]
    return next((str(candidate.resolve()) for candidate in candidates if candidate.is_file()), None)


def _relabel(splits, label_names, where, column):
    """The splits of one config with `label` as ClassLabel(LABEL_NAMES); one mapping for all splits of the config."""
    feature = splits["train"].features["label"]
    values = {name: split["label"][:] for name, split in splits.items()}
    _refuse_missing_labels(splits, values, feature, where, column)
    counts = Counter(value for split_values in values.values() for value in split_values)
    mapping = label_mapping(feature, counts, label_names, f"{where} (column {column!r})")
    if isinstance(feature, datasets.ClassLabel) and feature.names == list(LABEL_NAMES) and all(
            mapping[value] == value for value in mapping):
        return splits  # already in the training schema: the data stays untouched
    read_as = [f"{value!r} -> {LABEL_NAMES[label]}" for value, label in mapping.items()]
    logger.info("%s: labels of column %r read as %s.", where, column, ", ".join(sorted(read_as)))
    label_feature = datasets.ClassLabel(names=list(LABEL_NAMES))
    return {name: split.remove_columns("label").add_column("label", [mapping[value] for value in values[name]],
                                                           feature=label_feature)
            for name, split in splits.items()}  # fmt: skip


def _numeric_labels(splits, where, column):
    """The splits of one config with `label` as float32 values (regression); a row whose label is missing or not a
    finite number (numbers written as strings, as in a JSON file, are read) is refused, never dropped."""
    read = {}
    for name, split in splits.items():
        feature = split.features["label"]
        if isinstance(feature, datasets.ClassLabel):
            raise M2SAError(
                f"Column {column!r} of the {name} split of {where} holds sentiment classes "
                f"({', '.join(feature.names)}), not numbers: --problem-type regression needs a number per tweet. Read "
                f"a numeric column with --label-column, or train a classifier with --problem-type "
                f"single_label_classification.",
                code="non_numeric_labels",
            )
        values = [_finite_number(value) for value in split["label"][:]]
        unreadable = [row for row, value in enumerate(values) if value is None]
        if unreadable:
            examples = "; ".join(f"row {row} {split[row]['text']!r} has {_shown_value(split[row]['label'])}"
                                 for row in unreadable[:3])
            raise M2SAError(
                f"--problem-type regression needs a number in column {column!r} for every tweet, but {len(unreadable)} "
                f"of {len(values)} rows of the {name} split of {where} have none or another value (e.g. {examples}). "
                f"Rows are not dropped silently: write a number (int or float) in each, remove those rows, or read "
                f"another column with --label-column.",
                code="non_numeric_labels",
            )
        read[name] = values
    if all(split.features["label"] == datasets.Value("float32") for split in splits.values()):
        return splits  # already float32 values: the data stays untouched
    label_feature = datasets.Value("float32")
    return {name: split.remove_columns("label").add_column("label", read[name], feature=label_feature)
            for name, split in splits.items()}  # fmt: skip


def _shown_value(value):
    missing = value is None or (isinstance(value, float) and math.isnan(value))  # CSV readers give NaN for none
    return "no value" if missing else repr(value)


def _finite_number(value):
    """`value` as a float when it is a finite number (or a string spelling one), else None (missing, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _refuse_missing_labels(splits, values, feature, where, column):
    """Rows without a label (null, or a ClassLabel's -1) are an error: dropping them would change the data unseen."""
    missing = {name: [row for row, value in enumerate(split_values)
                      if value is None or (isinstance(feature, datasets.ClassLabel) and value < 0)]
               for name, split_values in values.items()}  # fmt: skip
    total = sum(len(rows) for rows in missing.values())
    if total:
        counts = ", ".join(f"{len(rows)} in {name}" for name, rows in missing.items() if rows)
        examples = [f"{name} row {row} {splits[name][row]['text']!r}" for name, rows in missing.items() for row in rows]
        raise M2SAError(
            f"{total} rows of {where} have no label in column {column!r} ({counts}; e.g. {'; '.join(examples[:3])}). "
            f"Rows are not dropped silently: label or remove them in the data, or read another column with "
            f"--label-column.",
            code="missing_labels",
        )


def label_mapping(feature, counts, label_names, where):
    """{raw label value: label id} for every value of `counts` ({value: rows}).

    ClassLabel ids are read through their names (or `label_names`), integers through `label_names` or else as -1/0/1,
    strings by their spelling (`LABEL_SPELLINGS`). Integers other than -1/0/1 need `label_names`: 0/1/2 could mean
    negative/neutral/positive or, with a binary dataset, negative/positive."""
    for name in label_names or ():
        if _spelled_label_id(name) is None:
            raise M2SAError(
                f"--label-names {' '.join(label_names)}: {name!r} is not a sentiment; use negative, neutral, positive "
                f"(or neg, neu, pos).",
                code="bad_label_names",
            )
    if isinstance(feature, datasets.ClassLabel):
        names = label_names or feature.names
        mapping = {value: _spelled_label_id(names[value]) if value < len(names) else None for value in counts}
    else:
        integers = {value: _integer(value) for value in counts}
        all_integers = None not in integers.values()
        if label_names and not all_integers:
            raise M2SAError(
                f"--label-names names integer labels 0, 1, 2, ..., but the labels of {where} are not all integers "
                f"({_listed(counts)}). Drop --label-names: label strings are read by their spelling.",
                code="bad_label_names",
            )
        if label_names:
            mapping = {value: _spelled_label_id(label_names[number]) if 0 <= number < len(label_names) else None
                       for value, number in integers.items()}  # fmt: skip
        elif all_integers:
            numbers = set(integers.values())
            if not (numbers <= {-1, 0, 1} and -1 in numbers):
                raise M2SAError(
                    f"The labels of {where} are the integers {sorted(numbers)}, which do not say which class each is "
                    f"(only -1/0/1 are read as negative/neutral/positive). Name them in order with --label-names, "
                    f"e.g. --label-names negative neutral positive for 0/1/2, or read another column with "
                    f"--label-column.",
                    code="ambiguous_labels",
                )
            mapping = {value: LABEL_IDS[str(number)] for value, number in integers.items()}
        else:
            mapping = {value: _spelled_label_id(value) if isinstance(value, str) else None for value in counts}
    unreadable = [value for value, label in mapping.items() if label is None]
    if unreadable:
        raise M2SAError(
            f"The labels of {where} cannot all be read as {'/'.join(LABEL_NAMES)}: "
            f"{_listed({value: counts[value] for value in unreadable})} cannot (values found: {_listed(counts)}). "
            f"Accepted: {ACCEPTED_LABELS}.",
            code="unreadable_labels",
        )
    return mapping


def _spelled_label_id(value):
    return LABEL_IDS.get(str(value).strip().lower())


def _integer(value):
    """`value` as an int when it is one (also 1.0 or "1"), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def _listed(counts, limit=20):
    """'value' (N rows), ... for the most frequent values of `counts`."""
    listed = ", ".join(f"{value!r} ({rows} rows)" for value, rows in Counter(counts).most_common(limit))
    return listed + (f" and {len(counts) - limit} more" if len(counts) > limit else "")


def _carve_missing_splits(splits, where, id_column, by_label=True):
    """The splits with validation and test carved from train when the config lacks them (`carve_splits`): rows are
    ordered by the hash of the id column, else of each row's text and image bytes; no seed is involved. `by_label`:
    carve within each label (classes); otherwise from all rows at once (regression values, nearly all distinct)."""
    missing = [split for split in CARVED_FRACTIONS if split not in splits]
    if not missing:
        return splits
    train = splits["train"]
    ids = train["tweet_id"][:] if id_column is not None else []
    if id_column is not None and None not in ids:
        order = f"the hash of column {id_column!r}"
    else:
        ids, order = _content_ids(train), "a hash of each row's text and image bytes"
    carved = carve_splits(ids, train["label"][:] if by_label else [None] * len(train), missing)
    for split in ("train", *missing):
        splits[split] = train.select([row for row, name in enumerate(carved) if name == split])
    logger.info(
        "%s has no %s split: carved from its %d train rows%s, ordered by %s (%s); now %s.", where,
        " or ".join(missing), len(train), " per label" if by_label else "", order,
        ", ".join(f"{CARVED_FRACTIONS[split]:.0%} {split}" for split in missing),
        ", ".join(f"{split} {len(splits[split])}" for split in SPLITS))
    return {split: splits[split] for split in SPLITS}


def _content_ids(split):
    """A stable id per row from its text and image bytes, for data without an id column."""
    ids = []
    for row in split.select_columns([name for name in ("text", "image") if name in split.column_names]):
        digest = hashlib.blake2b(row["text"].encode("utf-8"), digest_size=16)
        digest.update(b"\0" + _image_bytes(row.get("image")))
        ids.append(digest.hexdigest())
    return ids


def _image_bytes(image):
    """The encoded bytes of a `datasets.Image(decode=False)` value (read from its file when it holds only a path)."""
    if image is None:
        return b""
    if image["bytes"] is not None:
        return image["bytes"]
    path = Path(image["path"] or "")
    return path.read_bytes() if path.is_file() else b""


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

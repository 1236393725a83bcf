"""Any sentiment dataset as training data: opened, its configs chosen, and read into the columns training reads.

`--dataset` is a Hub id, a directory (built by `dataset_script/`, or any folder `datasets.load_dataset` reads: Parquet,
CSV or JSON shards, an image folder with metadata.csv) or one data file. Whatever its shape, every chosen config is
read into the M2SA schema (`loading`), so the collator, metrics and reports downstream read one set of names:

- `text`: string (a null text becomes "", with a warning);
- `image`: `datasets.Image(decode=False)`, null for a tweet without an image; absent for text-only data;
- `label`: ClassLabel(LABEL_NAMES), read from ClassLabel names, label strings or integers (`label_mapping`); with
  `--problem-type regression`, float32 values read from numbers (`numeric_labels`);
- `language`: string, from the language column, else the config name;
- `tweet_id`: string, when the data has an id column (`ID_COLUMNS`);
- `source`, `translated`: as they are, when present (`PROVENANCE_COLUMNS`).

Splits are train / validation / test (aliases such as `dev` renamed). A config without validation or test rows gets
them carved from its train rows by the dataset builder's rule (`dataset_script.splits.carve_splits`; per label for
classes, from all rows at once for regression values). Whatever cannot be read this way stops with an `M2SAError`
naming the input and the flag to use, before any training time is spent.

Inside, in the order a config is read: `opening` (configs, splits, data files), `columns` (the schema's columns and
split names), `labels` (label values as sentiment ids or numbers), `carving` (missing validation and test splits) and
`loading` (the chosen configs, together). Training (`train.py`) and labelling a corpus (`m2sa_training.score`) both read
datasets through this package.
"""

from .columns import ID_COLUMNS
from .loading import load_training_splits, resolve_configs, training_languages
from .opening import config_description, data_root, dataset_configs, demo_dataset_path, open_split, split_names

__all__ = [
    "ID_COLUMNS",
    "config_description",
    "data_root",
    "dataset_configs",
    "demo_dataset_path",
    "load_training_splits",
    "open_split",
    "resolve_configs",
    "split_names",
    "training_languages",
]

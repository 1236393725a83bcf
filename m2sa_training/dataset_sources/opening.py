"""Opening a dataset: its configs and splits as `datasets` reads them, from a Hub id, a directory or one data file."""

import re
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from modeling_m2sa.errors_m2sa import M2SAError

from ..processes import process_state


DEFAULT_CONFIG = "default"
"""The config `datasets` gives a dataset that names none (a folder of data files, a single file)."""

FILE_BUILDERS = {".parquet": ("parquet", {}), ".csv": ("csv", {}), ".tsv": ("csv", {"sep": "\t"}),
                 ".json": ("json", {}), ".jsonl": ("json", {})}  # fmt: skip
"""The `datasets` builder, and its arguments, that reads a single data file, by the file's suffix."""


def demo_dataset_path(cache_dir):
    """The embedded demo set under `cache_dir`, generated on first use (seconds) by the main process only."""
    from dataset_script.demo import ensure_demo_dataset

    with process_state().main_process_first():
        return str(ensure_demo_dataset(Path(cache_dir) / "demo-dataset"))


def dataset_configs(dataset):
    """The config names of `dataset`; a single data file has one, `default`."""
    if Path(dataset).is_file():
        file_builder(Path(dataset))  # an unreadable suffix is refused here, before anything is loaded
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


def file_builder(path):
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
    return open_config(dataset, config, where, split=split, streaming=streaming)


def open_config(dataset, config, where, **load_options):
    """All splits of one config (or the one split `load_options` names), as `datasets` reads them (a single file
    through the builder of its suffix)."""
    path = Path(dataset)
    try:
        if path.is_file():
            builder, arguments = file_builder(path)
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

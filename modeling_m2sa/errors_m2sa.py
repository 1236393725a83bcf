"""M2SA's one exception class for mistakes in what a user gave it (an input, an option, a file), each with a stable
reason code that other code reads instead of matching the message's wording; `ERROR_CODES` lists every code."""

ERROR_CODES = {
    # inputs of the model, processor and pipeline
    "invalid_input": "a value the model, processor or config cannot use (the default code)",
    "bad_option": "an option's value is not one it accepts, or it is given where it does not apply",
    "no_input": "neither text nor images were given",
    "length_mismatch": "texts and images of different lengths",
    "ambiguous_arguments": "a positional argument that could be texts or images",
    "empty_tweet": "a tweet with no text and no image",
    "invalid_tweet": "a pipeline input that is neither a string nor a dict with `text` and/or `image`",
    "text_only_model": "an image given to a model trained without images",
    "no_processor": "the pipeline was built without the model's processor",
    "missing_dependency": "an optional package the call needs is not installed",
    "explanation_mismatch": "a tweet's word pieces cannot be matched to its words for an explanation",
    # images (an image's `image_error_code` in results)
    "missing_file": "an image path that names no file",
    "unsupported_type": "an image that is neither a path, bytes, a PIL image, an array nor None",
    "undecodable": "bytes that are not an image, or a truncated image",
    "too_large": "an image over Pillow's decompression-bomb limit",
    # train.py's options and files
    "unknown_option": "a key of a YAML config or preset that is no option",
    "conflicting_options": "options that cannot be used together",
    "bad_config_file": "a YAML config that cannot be read as options",
    "missing_config_file": "a YAML config path that names no file",
    "bad_lora_target_modules": "LoRA target modules that match no layer of the towers",
    "tower_not_found": "a text or vision tower that is neither a Hub id nor a local folder",
    "output_dir_not_empty": "an output folder that holds files of something else",
    "output_dir_holds_other_run": "an output folder that holds a run with other options",
    "missing_checkpoint": "--resume-from-checkpoint names no checkpoint",
    "checkpoint_for_several_runs": "one checkpoint given to a job of several seeds or modalities",
    "bad_checkpoint": "checkpoints that cannot be averaged",
    "no_images": "an image-only run on data without images",
    "label_mismatch": "the data's labels do not fit the model (other label names, or classes for a regression model)",
    "disk_full": "the disk filled up while writing",
    # datasets (train.py --dataset, the scorer's corpus)
    "dataset_not_found": "a dataset that is neither a Hub id, a local folder nor a data file",
    "unsupported_file": "a data file of a format `datasets` does not read",
    "damaged_data_file": "a truncated or corrupt data file",
    "unknown_language": "a language code that is none of M2SA's languages and no config of the dataset",
    "unknown_config": "a config the dataset does not have",
    "empty_split": "a split without rows",
    "duplicate_split": "two splits of one config that mean the same split (e.g. `dev` and `validation`)",
    "no_train_split": "a config without a train split",
    "missing_column": "a column named by an option that the data does not have",
    "missing_language": "rows without a language in the language column",
    "bad_text_column": "a text column that does not hold text",
    "bad_image_column": "an image column that holds neither images, image bytes nor paths of files",
    "missing_labels": "rows without a label",
    "non_numeric_labels": "labels a regression model cannot read as numbers",
    "bad_label_names": "--label-names that are no sentiment names, or given for labels that are not integers",
    "ambiguous_labels": "integer labels that do not say which class each is",
    "unreadable_labels": "labels that cannot be read as negative, neutral or positive",
    # the experiment grid
    "bad_grid_config": "a grid config that cannot be read as runs",
    "missing_grid_config": "a grid config path that names no file",
    "run_folder_holds_other_run": "a run's folder holds a run with other options",
    # labelling a corpus
    "model_not_found": "a model that is neither a Hub id nor a folder with a saved M2SA model",
    "not_an_m2sa_model": "a folder whose model is no M2SA classifier",
    "regression_model": "a regression model given where class labels are written",
    "not_supported_by_model": "an option the saved model's code predates",
    "empty_dataset": "a corpus without rows",
    "output_dir_holds_other_job": "an output folder that holds the shards of another corpus or model",
    "shards_missing": "shards missing after a job that should have written them",
}
"""{reason code: what it means}: the codes an `M2SAError` carries (`error.code`), by where they arise."""


class M2SAError(ValueError):
    """A user-facing error: the message says what was wrong and what to do; `code` names the reason, one of
    `ERROR_CODES`.

    Entry points (`train.py`, the grid, the scorer, the Space) show these without a traceback; any other exception
    is a bug and keeps its traceback. It is a `ValueError`, as Python's own errors for a bad argument value are.
    """

    def __init__(self, message, code="invalid_input"):
        super().__init__(message)
        self.code = code

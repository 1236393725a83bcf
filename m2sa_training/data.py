"""Training data: the chosen configs of an M2SA-format dataset, checked before any training time is spent, and batching."""

from pathlib import Path

import datasets
import torch

from dataset_script.schema import ALL_CONFIG, M2SA_LANGUAGES, SPLITS, TRANSLATED_SUFFIX
from .processes import process_state


def demo_dataset_path(cache_dir):
    """The embedded demo set under `cache_dir`, generated on first use (seconds) by the main process only."""
    from dataset_script.demo import ensure_demo_dataset

    with process_state().main_process_first():
        return str(ensure_demo_dataset(Path(cache_dir) / "demo-dataset"))


def available_configs(dataset):
    try:
        return datasets.get_dataset_config_names(dataset)
    except Exception as error:  # datasets raises several types for "not there"; all mean the same to the user
        raise ValueError(
            f"Could not open the dataset {dataset!r} ({type(error).__name__}: {error}). Pass a local directory built "
            f"with `python dataset_script/build.py` or a Hub dataset id (needs network access)."
        ) from error


def resolve_configs(languages, include_translated, available):
    """The dataset configs to load for `languages` ("all", ISO codes, `*_mt` sets or any config of the dataset),
    checked against the `available` configs."""
    configs = []
    for language in languages:
        if language not in available:
            base = language.removesuffix(TRANSLATED_SUFFIX)
            if language != ALL_CONFIG and base not in M2SA_LANGUAGES:
                raise ValueError(
                    f"Unknown language code {language!r}. Use 'all' or one of the M2SA languages: "
                    f"{', '.join(M2SA_LANGUAGES)} (add '_mt' for a machine-translated set), or a config of the "
                    f"dataset: {', '.join(sorted(available))}."
                )
            raise ValueError(f"The dataset has no config {language!r}. Its configs: {', '.join(sorted(available))}.")
        configs.append(language)
        translated = f"{language}{TRANSLATED_SUFFIX}"
        if include_translated and language != ALL_CONFIG and translated in available:
            configs.append(translated)
    if include_translated and ALL_CONFIG in languages:
        configs += [name for name in sorted(available) if name.endswith(TRANSLATED_SUFFIX) and name not in configs]
    return configs


def load_splits(dataset, configs, max_train_samples=None):
    """train / validation / test of the configs concatenated; images left encoded (decoded per batch)."""
    parts = {split: [] for split in SPLITS}
    for config in configs:
        loaded = datasets.load_dataset(dataset, config)
        missing = [split for split in SPLITS if split not in loaded]
        if missing:
            raise ValueError(
                f"Config {config!r} of {dataset!r} has no {', '.join(missing)} split (it has {', '.join(loaded)}). "
                f"Rebuild the dataset with dataset_script/build.py, which writes train, validation and test."
            )
        for split in SPLITS:
            part = loaded[split]
            if "image" in part.features:
                part = part.cast_column("image", datasets.Image(decode=False))
            parts[split].append(part)
    splits = datasets.DatasetDict({split: datasets.concatenate_datasets(parts[split]) for split in SPLITS})
    if max_train_samples is not None:
        splits["train"] = splits["train"].select(range(min(max_train_samples, len(splits["train"]))))
    for split, part in splits.items():
        if len(part) == 0:
            raise ValueError(f"The {split} split of {', '.join(configs)} is empty; choose languages that have data.")
    return splits


def has_images(split):
    """Whether any row of the split has an image."""
    return "image" in split.features and split.data.column("image").null_count < len(split)


class IndexedRows(torch.utils.data.Dataset):
    """Rows of a `datasets.Dataset` with their position, so cached features can be looked up per row."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        row = self.dataset[index]
        row["row_index"] = index
        return row


def blank_texts(split):
    """The split with every text replaced by "" (the image-only modality: the model sees only the images)."""
    return split.map(lambda _: {"text": ""}, desc="blanking texts for the image-only model")


def check_label_names(split, model_config):
    """The dataset's label names (its `label` ClassLabel), checked against the model's `id2label`."""
    label_feature = split.features.get("label")
    dataset_names = list(getattr(label_feature, "names", None) or [])
    model_names = [model_config.id2label[index] for index in range(model_config.num_labels)]
    if dataset_names != model_names:
        raise ValueError(
            f"The dataset's labels {dataset_names or '(no ClassLabel `label` column)'} do not match the model's "
            f"labels {model_names} (id order matters). Use a dataset whose `label` column is a ClassLabel with "
            f"names {model_names}, e.g. one built with dataset_script/build.py."
        )
    return dataset_names


class TweetCollator:
    """Turns rows into a model batch, using cached tower features where given.

    `use_images`: whether the model reads images (False for a text-only model: images are ignored).
    `cached`: optional {"text_embeds": (N, D), "image_embeds": (N, D), "has_image": (N,)} indexed by row position.

    Stateless, so it works the same in DataLoader worker processes: an unreadable image makes its tweet one without an
    image, and the reason travels with the batch as `batch["image_errors"]` ({row position: reason}).
    """

    def __init__(self, processor, use_images, cached=None):
        self.processor = processor
        self.use_images = use_images
        self.cached = cached or {}

    def __call__(self, rows):
        row_ids = [row["row_index"] for row in rows]
        texts = None if "text_embeds" in self.cached else [row["text"] for row in rows]
        images = [row.get("image") for row in rows] if self.use_images and "image_embeds" not in self.cached else None
        batch = {"labels": torch.tensor([row["label"] for row in rows]), "image_errors": {}}
        if texts is not None or images is not None:
            encoded = self.processor.encode_tweets(texts, images, on_invalid_image="text_only", row_ids=row_ids)
            batch.update(encoded.inputs)
            batch["image_errors"] = encoded.image_errors
        indices = torch.tensor(row_ids)
        for key in ("text_embeds", "image_embeds", "has_image"):
            if key in self.cached:
                batch[key] = self.cached[key][indices]
        if not self.use_images:
            batch.pop("has_image", None)
        return batch


def model_inputs_and_image_errors(batch):
    """Split a collated batch into what the model takes and the {row position: reason} of unusable images."""
    inputs = dict(batch)
    return inputs, inputs.pop("image_errors")

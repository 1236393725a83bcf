"""Training data in the M2SA schema (read by `m2sa_training.dataset_sources`): checks against the model, and batching."""

import torch

from modeling_m2sa.configuration_m2sa import REGRESSION
from modeling_m2sa.errors_m2sa import M2SAError


def has_images(split):
    """Whether any row of the split has an image."""
    # Read through the rows, not `split.data`: a carved split selects rows of a larger table.
    return "image" in split.features and any(image is not None for image in split["image"])


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
    """The dataset's label names (its `label` ClassLabel), checked against the model's `id2label`; for a regression
    model, its one label name, once the dataset's `label` is checked to hold float values."""
    label_feature = split.features.get("label")
    if model_config.problem_type == REGRESSION:
        if getattr(label_feature, "dtype", None) not in ("float32", "float64"):
            raise M2SAError(
                f"A regression model learns one number per tweet, but the dataset's `label` column holds "
                f"{label_feature}. Read its labels with --problem-type regression (numbers become float values).",
                code="label_mismatch",
            )
        return model_config.label_names
    dataset_names = list(getattr(label_feature, "names", None) or [])
    model_names = model_config.label_names
    if dataset_names != model_names:
        raise M2SAError(
            f"The dataset's labels {dataset_names or '(no ClassLabel `label` column)'} do not match the model's "
            f"labels {model_names} (id order matters). Use a dataset whose `label` column is a ClassLabel with "
            f"names {model_names}, e.g. one built with dataset_script/build.py.",
            code="label_mismatch",
        )
    return dataset_names


class TweetCollator:
    """Turns rows into a model batch, using cached tower features where given: `labels` are label ids (int64) for
    classes, float32 values for a regression dataset.

    `use_images`: whether the model reads images (False for a text-only model: images are ignored).
    `cached`: optional {"text_embeds": (N, D), "image_embeds": (N, D), "has_image": (N,)} indexed by row position.

    Stateless, so it works the same in DataLoader worker processes: an unreadable image makes its tweet one without an
    image, and the reason travels with the batch as `batch["image_errors"]` ({row position: reason}). The rows'
    positions travel as `batch["row_index"]` (modality dropout decides by them).
    """

    def __init__(self, processor, use_images, cached=None):
        self.processor = processor
        self.use_images = use_images
        self.cached = cached or {}

    def __call__(self, rows):
        row_ids = [row["row_index"] for row in rows]
        texts = None if "text_embeds" in self.cached else [row["text"] for row in rows]
        images = [row.get("image") for row in rows] if self.use_images and "image_embeds" not in self.cached else None
        indices = torch.tensor(row_ids)
        batch = {"labels": torch.tensor([row["label"] for row in rows]), "row_index": indices, "image_errors": {}}
        if texts is not None or images is not None:
            encoded = self.processor.encode_tweets(texts, images, on_invalid_image="text_only", row_ids=row_ids)
            batch.update(encoded.inputs)
            batch["image_errors"] = encoded.image_errors
        for key in ("text_embeds", "image_embeds", "has_image"):
            if key in self.cached:
                batch[key] = self.cached[key][indices]
        if not self.use_images:
            batch.pop("has_image", None)
        return batch


def model_inputs_and_image_errors(batch):
    """Split a collated batch into what the model takes and the {row position: reason} of unusable images
    (`batch` itself keeps its `row_index`)."""
    inputs = dict(batch)
    inputs.pop("row_index")
    return inputs, inputs.pop("image_errors")

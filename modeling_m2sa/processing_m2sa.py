"""Turns tweets (text + optional image) into M2SA model inputs: dynamically padded token ids and RGB pixel values."""

import io
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers import AutoImageProcessor, AutoTokenizer, CLIPImageProcessorPil
from transformers.dynamic_module_utils import get_relative_imports
from transformers.feature_extraction_utils import BatchFeature
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name
from transformers.processing_utils import ProcessorMixin

TOKENIZER_CONFIG = "tokenizer_config.json"
PROCESSOR_CONFIG = "processor_config.json"
REEXPORT = "Re-export it with train.py (or save_pretrained), or download it again."
HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class InvalidImageError(ValueError):
    """An image that cannot be used: missing file, undecodable or truncated bytes, or too large."""


def _open_image(image, where):
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, dict):  # the `datasets.Image(decode=False)` form: {"bytes": ..., "path": ...}
        if image.get("bytes") is not None:
            return _open_image(image["bytes"], where)
        if image.get("path") is not None:
            return _open_image(image["path"], where)
        raise InvalidImageError(f"{where} is a dict without 'bytes' or 'path'.")
    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(image)))
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InvalidImageError(f"{where}: no file at {str(path)!r}. Check the path, or pass None for no image.")
        return Image.open(path)
    raise InvalidImageError(
        f"{where} has unsupported type {type(image).__name__}; pass a PIL image, a file path, bytes, a numpy array "
        f"or None."
    )


def _to_rgb(image):
    """Convert any PIL mode to 8-bit RGB: transparency over white, 16-bit and float images rescaled, CMYK converted."""
    if image.mode in HIGH_BIT_DEPTH_MODES:
        values = np.asarray(image, dtype=np.float32)
        if values.max(initial=0.0) > 255:
            values = values / 257.0  # 16-bit range 0..65535 to 0..255
        image = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def load_image(image, index=None):
    """Open one tweet image and return it as an RGB PIL image, upright per its EXIF orientation.

    Accepts a PIL image, a path, encoded bytes, a numpy array or a `datasets` image dict. Animated images use their
    first frame. Raises `InvalidImageError` with the reason when the image cannot be used.
    """
    where = "image" if index is None else f"image {index}"
    try:
        opened = _open_image(image, where)
        if getattr(opened, "is_animated", False):
            opened.seek(0)
        opened.load()
        return _to_rgb(ImageOps.exif_transpose(opened))
    except Image.DecompressionBombError as error:
        raise InvalidImageError(f"{where} is too large to decode safely ({error}). Resize it first.") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, InvalidImageError):
            raise
        raise InvalidImageError(
            f"{where} could not be decoded ({error}). Pass a complete JPEG/PNG/GIF/WebP image, or None to classify "
            f"the tweet from its text alone."
        ) from error


INVALID_IMAGE_POLICIES = ("raise", "text_only")


def as_text_list(text):
    texts = [text] if isinstance(text, str) or text is None else list(text)
    for index, value in enumerate(texts):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"text {index} is a {type(value).__name__}; each tweet text must be a string or None.")
    return ["" if value is None else value for value in texts]


def as_image_list(images, num_texts, single_text):
    if images is None:
        return [None] * num_texts
    if single_text and not isinstance(images, (list, tuple)):
        images = [images]
    images = list(images)
    if len(images) != num_texts:
        raise ValueError(
            f"Got {num_texts} texts and {len(images)} images; pass one image (or None) per text, in the same order."
        )
    return images


def decode_images(images, row_ids, on_invalid_image):
    """Each image decoded once to RGB (None where absent or, with `"text_only"`, unusable) and {row id: reason}."""
    if on_invalid_image not in INVALID_IMAGE_POLICIES:
        raise ValueError(f"on_invalid_image must be one of {INVALID_IMAGE_POLICIES}, got {on_invalid_image!r}.")
    decoded, image_errors = [], {}
    for row_id, image in zip(row_ids, images):
        if image is not None:
            try:
                image = load_image(image, row_id)
            except InvalidImageError as error:
                if on_invalid_image == "raise":
                    raise
                image_errors[row_id] = str(error)
                image = None
        decoded.append(image)
    return decoded, image_errors


def saved_folder(name_or_path, subfolder=None):
    """The local folder `from_pretrained` reads, or None (a Hub id)."""
    if name_or_path is None:
        return None
    folder = Path(name_or_path) / (subfolder or "")
    return folder if folder.is_dir() else None


def auto_map_modules(config_file):
    """The code modules named by the `auto_map` and `custom_pipelines` of a saved JSON config (none if it is absent)."""
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    references = list((config.get("auto_map") or {}).values())
    references += [entry.get("impl") for entry in (config.get("custom_pipelines") or {}).values()]
    flat = [name for reference in references for name in (reference if isinstance(reference, list) else [reference])]
    # "module.Class", or "repo--module.Class" for code kept in another Hub repo
    return [name.split("--")[-1].rsplit(".", 1)[0] for name in flat if name]


def check_code_files(folder, modules):
    """Fail, naming the files, when a saved `folder` lacks code that `trust_remote_code=True` loads from it: the
    `modules` and those they import relatively."""
    missing, seen, pending = [], set(), list(modules)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        file = folder / f"{module}.py"
        if file.is_file():
            pending += get_relative_imports(file)
        else:
            missing.append(file.name)
    if missing:
        raise OSError(
            f"{folder} lacks {', '.join(sorted(missing))}: code that `trust_remote_code=True` and "
            f"`pipeline(model=...)` load from a saved M2SA model, so the folder is incomplete. {REEXPORT}"
        )


def check_tokenizer_files(folder):
    """Fail, naming the files, when a saved processor `folder` lacks its tokenizer: transformers would otherwise build
    a tokenizer with an empty or default vocabulary in its place."""
    config_file = folder / TOKENIZER_CONFIG
    if not config_file.is_file():
        raise OSError(f"{folder} has no tokenizer: {TOKENIZER_CONFIG} is missing. {REEXPORT}")
    tokenizer_class = tokenizer_class_from_name(
        json.loads(config_file.read_text(encoding="utf-8")).get("tokenizer_class") or "")
    vocabulary_files = sorted(set(getattr(tokenizer_class, "vocab_files_names", {}).values()))
    if vocabulary_files and not any((folder / name).is_file() for name in vocabulary_files):
        raise OSError(
            f"{folder} has no tokenizer vocabulary: its {tokenizer_class.__name__} needs one of "
            f"{', '.join(vocabulary_files)}, and none is there. {REEXPORT}"
        )


class EncodedTweets(NamedTuple):
    """What `M2SAProcessor.encode_tweets` returns: the model inputs and why some images could not be used."""

    inputs: BatchFeature
    image_errors: dict
    """{row id: reason} for every image that was given but could not be used (empty with `on_invalid_image="raise"`)."""


class M2SAProcessor(ProcessorMixin):
    r"""
    Wraps the text tower's tokenizer and the image tower's image processor.

    Texts are truncated to `max_length` tokens and padded to the longest text in the batch (never to a fixed length).
    Images are converted to RGB (see [`load_image`]); tweets without an image get a zero image and `has_image=False`.

    Args:
        image_processor: the image tower's image processor (unused by a text-only model).
        tokenizer: the text tower's tokenizer.
        max_length (`int`, *optional*, defaults to 128): maximum number of tokens per tweet.
    """

    def __init__(self, image_processor=None, tokenizer=None, max_length=128, **kwargs):
        self.max_length = max_length
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load a saved processor; a local folder lacking its tokenizer or code fails with the missing files named."""
        folder = saved_folder(pretrained_model_name_or_path, kwargs.get("subfolder"))
        if folder is not None:
            check_tokenizer_files(folder)
            check_code_files(folder, auto_map_modules(folder / PROCESSOR_CONFIG))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def from_towers(cls, text_model_name_or_path, vision_model_name_or_path=None, max_length=128):
        """Build the processor of the towers given to `M2SAForSequenceClassification.from_towers` (Hub ids or paths).

        A text-only model (`vision_model_name_or_path=None`) still carries a default CLIP image processor, which it
        never uses, because a processor holds both components.
        """
        tokenizer = AutoTokenizer.from_pretrained(text_model_name_or_path)
        if vision_model_name_or_path is None:
            image_processor = CLIPImageProcessorPil()
        else:
            image_processor = AutoImageProcessor.from_pretrained(vision_model_name_or_path)
        return cls(image_processor=image_processor, tokenizer=tokenizer, max_length=max_length)

    def tokenize(self, texts, max_length=None, padding=True, return_tensors="pt"):
        """Token ids of `texts`, truncated to `max_length` (default `self.max_length`) and padded to the longest."""
        return self.tokenizer(
            as_text_list(texts),
            padding=padding,
            truncation=True,
            max_length=max_length or self.max_length,
            return_tensors=return_tensors,
        )

    def encode_tweets(self, texts, images=None, *, on_invalid_image="raise", row_ids=None, max_length=None):
        """Model inputs for a batch of tweets: the one place where texts and images become tensors.

        Args:
            texts: one string per tweet ("" for a tweet that is only an image), or None to encode only the images
                (for callers that already have the text features).
            images: None, or one image (PIL, path, bytes, numpy array, `datasets` image dict) or None per tweet.
                Each image is decoded once.
            on_invalid_image: "raise" stops at the first unusable image with its row id and reason; "text_only"
                treats such a tweet as one without an image and reports why in `image_errors`.
            row_ids: how rows are named in errors and in `image_errors` (default: their positions 0..n-1).
            max_length: overrides `self.max_length` for this call.

        Returns:
            [`EncodedTweets`]: `inputs` (`input_ids`, `attention_mask` unless `texts` is None; `has_image`
            `(batch,)`; `pixel_values` `(batch, 3, H, W)` with zeros where a tweet has no image, only when some tweet
            has one) and `image_errors` ({row id: reason}).
        """
        if texts is None and images is None:
            raise ValueError("Pass tweet texts, images, or both.")
        num_rows = len(texts) if texts is not None else len(images)
        row_ids = list(range(num_rows)) if row_ids is None else list(row_ids)
        if len(row_ids) != num_rows:
            raise ValueError(f"Got {num_rows} tweets and {len(row_ids)} row ids; pass one row id per tweet.")
        data = {}
        if texts is not None:
            data.update(self.tokenize(texts, max_length=max_length))
        decoded, image_errors = decode_images(as_image_list(images, num_rows, False), row_ids, on_invalid_image)
        has_image = torch.tensor([image is not None for image in decoded], dtype=torch.bool)
        data["has_image"] = has_image
        present = [image for image in decoded if image is not None]
        if present:
            present_pixels = self.image_processor(images=present, return_tensors="pt")["pixel_values"]
            pixel_values = present_pixels.new_zeros((num_rows, *present_pixels.shape[1:]))
            pixel_values[has_image] = present_pixels
            data["pixel_values"] = pixel_values
        return EncodedTweets(BatchFeature(data=data), image_errors)

    def __call__(self, text=None, images=None, max_length=None, return_tensors="pt", **kwargs):
        """Model inputs for a batch of tweets; an unusable image raises `InvalidImageError`.

        Args:
            text: a tweet or a list of tweets (None or "" for a tweet that is only an image).
            images: None, or one image (PIL, path, bytes, array) or None per tweet.
            max_length: overrides `self.max_length` for this call.

        Returns:
            `BatchFeature` with `input_ids`, `attention_mask`, `has_image` and, when any tweet has an image,
            `pixel_values`. Use [`encode_tweets`] to classify tweets with unusable images from their text instead.
        """
        if return_tensors != "pt":
            raise ValueError("M2SAProcessor returns PyTorch tensors only; use return_tensors='pt'.")
        if kwargs:
            raise TypeError(f"Unexpected arguments {sorted(kwargs)}; M2SAProcessor takes text, images and max_length.")
        texts = as_text_list(text)
        image_list = as_image_list(images, len(texts), single_text=isinstance(text, str))
        return self.encode_tweets(texts, image_list, max_length=max_length).inputs

    @property
    def model_input_names(self):
        return list(self.tokenizer.model_input_names) + ["pixel_values", "has_image"]

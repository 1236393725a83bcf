"""Turns tweets (text + optional image) into M2SA model inputs: dynamically padded token ids and RGB pixel values."""

import difflib
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import AutoImageProcessor, AutoTokenizer

try:  # transformers 5 names its PIL/numpy image processors *Pil
    from transformers import CLIPImageProcessorPil
except ImportError:  # transformers 4.x, where CLIPImageProcessor is the PIL/numpy one
    from transformers import CLIPImageProcessor as CLIPImageProcessorPil
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ImagesKwargs, ProcessingKwargs, ProcessorMixin, TextKwargs

from .errors_m2sa import M2SAError
from .images_m2sa import InvalidImageError, load_image
from .normalization_m2sa import check_text_normalization, normalize_tweet
from .saved_folder_m2sa import (
    IMAGE_PROCESSOR_CONFIG,
    PROCESSOR_CONFIG,
    auto_map_modules,
    check_code_files,
    check_tokenizer_files,
    saved_folder,
)

INVALID_IMAGE_POLICIES = ("raise", "text_only")
COMPONENTS = ("image_processor", "tokenizer")
DEFAULT_MAX_LENGTH = 128
"""Tokens per tweet a processor keeps when it is not told otherwise (a tweet of 280 characters rarely needs more)."""
"""The processor's components, as `__init__` names them."""


def check_invalid_image_policy(on_invalid_image):
    if on_invalid_image not in INVALID_IMAGE_POLICIES:
        raise M2SAError(f"on_invalid_image must be one of {INVALID_IMAGE_POLICIES}, got {on_invalid_image!r}: "
                        f"'raise' stops at an unusable image, 'text_only' classifies its tweet from the text.",
                        code="bad_option")
    return on_invalid_image


def is_empty_tweet(text, has_image):
    """The rule for a tweet with nothing to classify: no image and a text that is empty or only whitespace."""
    return not has_image and not (text or "").strip()


def check_tweets(texts, has_images, row_ids, text_only_model):
    """Refuse tweets a model cannot classify, naming them: any image given to a text-only model ("text_only_model"),
    and tweets with empty text and no image ("empty_tweet")."""
    if text_only_model:
        with_image = [row for row, has_image in zip(row_ids, has_images) if has_image]
        if with_image:
            raise M2SAError(
                f"This model is text-only (vision_config=None), but tweets {with_image[:10]} have an image; "
                f"pass their text alone.", code="text_only_model"
            )
    empty = [row for row, text, has_image in zip(row_ids, texts, has_images) if is_empty_tweet(text, has_image)]
    if empty:
        raise M2SAError(
            f"Tweets {_first_rows(empty)} have empty text and no image, so there is nothing to classify. Remove them "
            f"or give them a text or an image.", code="empty_tweet"
        )


def _first_rows(rows, limit=10):
    return ", ".join(map(str, rows[:limit])) + ("..." if len(rows) > limit else "")


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
        raise M2SAError(
            f"Got {num_texts} texts and {len(images)} images; pass one image (or None) per text, in the same order.",
            code="length_mismatch"
        )
    return images


def decode_images(images, row_ids, on_invalid_image):
    """Each image decoded once to RGB (None where absent or, with `"text_only"`, unusable) and {row id:
    `InvalidImageError`} for the unusable ones."""
    check_invalid_image_policy(on_invalid_image)
    decoded, image_problems = [], {}
    for row_id, image in zip(row_ids, images):
        if image is not None:
            try:
                image = load_image(image, row_id)
            except InvalidImageError as error:
                if on_invalid_image == "raise":
                    raise
                image_problems[row_id] = error
                image = None
        decoded.append(image)
    return decoded, image_problems


class EncodedTweets(NamedTuple):
    """What `M2SAProcessor.encode_tweets` returns: the model inputs and why some images could not be used."""

    inputs: BatchFeature
    image_problems: dict
    """{row id: `InvalidImageError`} for every image that was given but could not be used (its `code` and message;
    empty with `on_invalid_image="raise"`)."""

    @property
    def image_errors(self):
        """{row id: reason message} of `image_problems`."""
        return {row: str(problem) for row, problem in self.image_problems.items()}


class M2SAImagesKwargs(ImagesKwargs, total=False):
    """The image processor's standard kwargs, plus what to do with an image that cannot be used.

    on_invalid_image (`str`, *optional*, defaults to `"raise"`):
        "raise" stops at the first unusable image with its row and reason; "text_only" encodes that tweet as one
        without an image (`has_image=False`) and warns with the reasons ([`M2SAProcessor.encode_tweets`] returns them).
    """

    on_invalid_image: str


class M2SAProcessingKwargs(ProcessingKwargs, total=False):
    """The kwargs `M2SAProcessor.__call__` takes, routed as transformers routes them: the tokenizer's (`padding`,
    `truncation`, `max_length`, `return_attention_mask`, ...) to the tokenizer, the image processor's to it,
    `return_tensors` to both."""

    text_kwargs: TextKwargs
    images_kwargs: M2SAImagesKwargs
    # the lowest-priority defaults (the processor's `max_length` is added to them per instance): transformers 4.x
    # reads them from here, transformers 5 from the processor's `text_kwargs` / `images_kwargs`
    _defaults = {
        "text_kwargs": {"padding": True, "truncation": True, "return_tensors": "pt"},
        "images_kwargs": {"return_tensors": "pt", "on_invalid_image": "raise"},
    }


def _looks_like_text(value):
    """A string or a list of strings/None: a tweet text or a batch of them (a string may also be an image path)."""
    if isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and all(item is None or isinstance(item, str) for item in value)


def _converted(values, return_tensors):
    """A torch tensor as `return_tensors` asks: torch ("pt"), numpy ("np") or per-row Python/numpy values (None)."""
    return_tensors = getattr(return_tensors, "value", return_tensors)  # a `TensorType` or its string
    if return_tensors == "pt":
        return values
    if return_tensors == "np":
        return values.numpy()
    return [row.numpy() if row.dim() else row.item() for row in values]


class M2SAProcessor(ProcessorMixin):
    r"""
    Wraps the text tower's tokenizer and the image tower's image processor, with `ProcessorMixin`'s conventions:

        processor(images=images, text=texts, return_tensors="pt", padding=True)

    takes the tokenizer's kwargs (`padding`, `truncation`, `max_length`, `return_attention_mask`, ...) and the image
    processor's, routed as every transformers processor routes them (also as `text_kwargs={...}` /
    `images_kwargs={...}`). Defaults: texts truncated to `max_length` tokens and padded to the longest text in the
    batch (never to a fixed length), PyTorch tensors. What M2SA adds: each tweet's image is optional (`images` holds
    one image or None per text; tweets without one get zero pixels and `has_image=False`), images are converted to
    RGB (see [`load_image`]), and `on_invalid_image` says what to do with an image that cannot be used.

    Args:
        image_processor: the image tower's image processor (unused by a text-only model).
        tokenizer: the text tower's tokenizer.
        max_length (`int`, *optional*, defaults to 128): maximum number of tokens per tweet (saved with the
            processor).
        text_normalization (`str`, *optional*, defaults to `"none"`): how a tweet is written before it is tokenised
            (saved with the processor, so training, the pipeline, the scorer and the Space read tweets alike):
            `"twitter"` turns mentions into `@user` and links into `http` as XLM-T and UMSAB do (see
            `normalization_m2sa`); `"none"` tokenises the text as given.
        text_prefix (`str`, *optional*, defaults to `""`): put before every tweet that has text, after normalisation
            (saved with the processor): a text tower's input convention, such as multilingual-e5's `"query: "`.
    """

    valid_processor_kwargs = M2SAProcessingKwargs
    if not hasattr(ProcessorMixin, "get_attributes"):
        # transformers 4.x reads the components from these (transformers 5 from `__init__`'s signature, and warns
        # that these are deprecated)
        attributes = list(COMPONENTS)
        image_processor_class = "AutoImageProcessor"
        tokenizer_class = "AutoTokenizer"

    def __init__(self, image_processor=None, tokenizer=None, max_length=DEFAULT_MAX_LENGTH, text_normalization="none",
                 text_prefix="", **kwargs):
        self.max_length = max_length
        self.text_normalization = check_text_normalization(text_normalization)
        self.text_prefix = text_prefix
        super().__init__(image_processor, tokenizer, **kwargs)

    def normalized_texts(self, texts):
        """`texts` (one string or a list) as `text_normalization` writes them, as a list."""
        return [normalize_tweet(text, self.text_normalization) for text in as_text_list(texts)]

    def model_texts(self, texts):
        """`texts` (one string or a list) as the text tower reads them, as a list: normalised, then `text_prefix`
        before each one that has text (a tweet that is only an image stays without text)."""
        return [self.text_prefix + text if text and text.strip() else text for text in self.normalized_texts(texts)]

    @property
    def text_kwargs(self):
        """The tokenizer's defaults (lowest priority in `_merge_kwargs`): truncate to `max_length`, pad to the
        longest, PyTorch tensors."""
        return {**M2SAProcessingKwargs._defaults["text_kwargs"], "max_length": self.max_length}

    @property
    def images_kwargs(self):
        return dict(M2SAProcessingKwargs._defaults["images_kwargs"])

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load a saved processor; a local folder lacking its tokenizer or code fails with the missing files named."""
        folder = saved_folder(pretrained_model_name_or_path, kwargs.get("subfolder"))
        if folder is not None:
            check_tokenizer_files(folder)
            check_code_files(folder, auto_map_modules(folder / PROCESSOR_CONFIG))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def from_args_and_dict(cls, args, processor_dict, **kwargs):
        # transformers 4.x passes the components it loaded and, from a processor_config.json that transformers 5
        # wrote, the same components as dicts: the loaded ones are kept
        processor_dict = {key: value for key, value in processor_dict.items() if key not in COMPONENTS}
        return super().from_args_and_dict(args, processor_dict, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        # transformers 5 keeps the image processor inside processor_config.json; transformers 4.x reads it from its
        # own file, written first so that a push (`push_to_hub=True`) uploads it too
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        self.image_processor.to_json_file(Path(save_directory) / IMAGE_PROCESSOR_CONFIG)
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_towers(cls, text_model_name_or_path, vision_model_name_or_path=None, max_length=DEFAULT_MAX_LENGTH,
                    text_normalization="none", text_prefix=""):
        """Build the processor of the towers given to `M2SAForSequenceClassification.from_towers` (Hub ids or paths).

        A text-only model (`vision_model_name_or_path=None`) still carries a default CLIP image processor, which it
        never uses, because a processor holds both components.
        """
        tokenizer = AutoTokenizer.from_pretrained(text_model_name_or_path)
        if vision_model_name_or_path is None:
            image_processor = CLIPImageProcessorPil()
        else:
            image_processor = AutoImageProcessor.from_pretrained(vision_model_name_or_path)
        return cls(image_processor=image_processor, tokenizer=tokenizer, max_length=max_length,
                   text_normalization=text_normalization, text_prefix=text_prefix)

    def valid_call_kwargs(self):
        """Every keyword `__call__` accepts: the modality dicts, the processor's own and the components' kwargs."""
        names = set(M2SAProcessingKwargs.__annotations__) | {"common_kwargs"}
        for typed_dict, component in ((TextKwargs, self.tokenizer), (M2SAImagesKwargs, self.image_processor)):
            names |= set(typed_dict.__annotations__)
            names |= set(getattr(getattr(component, "valid_kwargs", None), "__annotations__", {}))
        return sorted(names - {"videos_kwargs", "audio_kwargs"})

    def merged_kwargs(self, **kwargs):
        """{"text_kwargs": ..., "images_kwargs": ...} for this call, as `ProcessorMixin._merge_kwargs` merges them
        (call kwargs over the tokenizer's init kwargs over the processor's defaults); an unknown kwarg raises, naming
        the closest valid one."""
        valid = self.valid_call_kwargs()
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, valid, n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TypeError(f"{type(self).__name__} got unexpected arguments {', '.join(hints)}; it takes images, "
                            f"text, the tokenizer's and the image processor's kwargs and on_invalid_image (all of "
                            f"them: processor.valid_call_kwargs()).")
        merged = self._merge_kwargs(M2SAProcessingKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        if merged["text_kwargs"].get("max_length") is None:  # `max_length=None` means the saved one
            merged["text_kwargs"]["max_length"] = self.max_length
        return merged

    def tokenize(self, texts, **text_kwargs):
        """Token ids of `texts` with the processor's defaults (truncated to `max_length`, padded to the longest) and
        any tokenizer kwargs given."""
        return self.tokenizer(self.model_texts(texts), **self.merged_kwargs(**text_kwargs)["text_kwargs"])

    def encode_tweets(self, texts, images=None, *, row_ids=None, **kwargs):
        """Model inputs for a batch of tweets: the one place where texts and images become tensors.

        Args:
            texts: one string per tweet ("" for a tweet that is only an image), or None to encode only the images
                (for callers that already have the text features).
            images: None, or one image (PIL, path, bytes, numpy array, `datasets` image dict) or None per tweet.
                Each image is decoded once.
            row_ids: how rows are named in errors and in `image_problems` (default: their positions 0..n-1).
            kwargs: as `__call__` takes them, `on_invalid_image` included: "raise" stops at the first unusable image
                with its row id and reason; "text_only" treats such a tweet as one without an image and returns why
                in `image_problems`.

        Returns:
            [`EncodedTweets`]: `inputs` (`input_ids`, `attention_mask` unless `texts` is None; `has_image`
            `(batch,)`; `pixel_values` `(batch, 3, H, W)` with zeros where a tweet has no image, only when some tweet
            has one) and `image_problems` ({row id: `InvalidImageError`}).
        """
        if texts is None and images is None:
            raise M2SAError("Pass tweet texts, images, or both.", code="no_input")
        merged = self.merged_kwargs(**kwargs)
        text_kwargs, images_kwargs = merged["text_kwargs"], merged["images_kwargs"]
        on_invalid_image = images_kwargs.pop("on_invalid_image")
        return_tensors = images_kwargs.pop("return_tensors", None)
        num_rows = len(texts) if texts is not None else len(images)
        row_ids = list(range(num_rows)) if row_ids is None else list(row_ids)
        if len(row_ids) != num_rows:
            raise M2SAError(f"Got {num_rows} tweets and {len(row_ids)} row ids; pass one row id per tweet.",
                            code="length_mismatch")
        data = {}
        if texts is not None:
            data.update(self.tokenizer(self.model_texts(texts), **text_kwargs))
        decoded, image_problems = decode_images(as_image_list(images, num_rows, False), row_ids, on_invalid_image)
        has_image = torch.tensor([image is not None for image in decoded], dtype=torch.bool)
        data["has_image"] = _converted(has_image, return_tensors)
        present = [image for image in decoded if image is not None]
        if present:
            present_pixels = self.image_processor(images=present, **images_kwargs, return_tensors="pt")["pixel_values"]
            pixel_values = present_pixels.new_zeros((num_rows, *present_pixels.shape[1:]))
            pixel_values[has_image] = present_pixels
            data["pixel_values"] = _converted(pixel_values, return_tensors)
        return EncodedTweets(BatchFeature(data=data), image_problems)

    def __call__(self, images=None, text=None, *args, **kwargs):
        """Model inputs for a batch of tweets, as `ProcessorMixin.__call__` takes them.

        Args:
            images: None, or one image (PIL, path, bytes, array, `datasets` image dict) or None per tweet.
            text: a tweet or a list of tweets (None or "" for a tweet that is only an image).
            kwargs: the tokenizer's kwargs (`padding`, `truncation`, `max_length`, `return_attention_mask`, ...), the
                image processor's, `return_tensors` ("pt", "np" or None), `text_kwargs` / `images_kwargs` dicts, and
                `on_invalid_image` ("raise", the default, raises `InvalidImageError`; "text_only" encodes such a tweet
                without its image and warns why).

        The transformers 5 positional order is `processor(images, text)`. The older `processor(text, images)` still
        works, with a `FutureWarning`, when the types tell which is which (texts first, then something only an image
        can be); otherwise pass them by keyword.

        Returns:
            `BatchFeature` with `input_ids`, `attention_mask`, `has_image` and, when any tweet has an image,
            `pixel_values`. Use [`encode_tweets`] to get the reasons for unusable images as values.
        """
        images, text = self._inputs_in_order(images, text, args)
        texts = as_text_list(text)
        image_list = as_image_list(images, len(texts), single_text=isinstance(text, str))
        encoded = self.encode_tweets(texts, image_list, **kwargs)
        if encoded.image_problems:
            warnings.warn(
                "Some images could not be used and their tweets were encoded without an image: "
                + "; ".join(f"{row}: {problem} [{problem.code}]" for row, problem in encoded.image_problems.items()),
                stacklevel=2,
            )
        return encoded.inputs

    @staticmethod
    def _inputs_in_order(images, text, extra_args):
        if extra_args:
            raise TypeError("M2SAProcessor takes two positional arguments, images and text; pass the rest by keyword.")
        if images is None or text is not None and not _looks_like_text(images):
            if images is None and text is None:
                raise M2SAError("Pass tweet texts, images, or both: processor(images=..., text=...).", code="no_input")
            return images, text
        if text is None:
            if _looks_like_text(images) and not all(
                    item is None or Path(item).is_file() for item in ([images] if isinstance(images, str) else images)):
                raise M2SAError(
                    "processor(x) reads its first positional argument as images (the transformers 5 order), and "
                    f"{images!r:.60} is not a file. Pass tweet texts by keyword: processor(text=...).",
                    code="ambiguous_arguments"
                )
            return images, text
        if _looks_like_text(images) and not _looks_like_text(text):
            warnings.warn(
                "processor(text, images) is the old positional order; transformers 5 processors take (images, text). "
                "Pass them by keyword, processor(text=..., images=...), to be unambiguous.",
                FutureWarning, stacklevel=3,
            )
            return text, images
        return images, text

    @property
    def model_input_names(self):
        return list(self.tokenizer.model_input_names) + ["pixel_values", "has_image"]

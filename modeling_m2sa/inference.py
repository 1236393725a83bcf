"""Fast batched prediction: length-sorted batches, dynamic padding, `torch.inference_mode`, optional bf16 autocast."""

import warnings

import torch

from .processing_m2sa import INVALID_IMAGE_POLICIES, as_image_list, as_text_list

AUTOCAST_DTYPES = {None: None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, torch.bfloat16: torch.bfloat16}


def cpu_has_native_bf16():
    """Whether this CPU computes bfloat16 natively (otherwise bf16 autocast on CPU is slower than fp32)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _check_inputs(model, texts, images):
    has_vision_tower = model.config.vision_config is not None
    if not has_vision_tower and any(image is not None for image in images):
        raise ValueError("This model is text-only (vision_config=None); call predict with images=None.")
    nothing_to_classify = [i for i, (t, im) in enumerate(zip(texts, images)) if not t.strip() and im is None]
    if nothing_to_classify:
        shown = ", ".join(map(str, nothing_to_classify[:10]))
        raise ValueError(
            f"Tweets {shown}{'...' if len(nothing_to_classify) > 10 else ''} have empty text and no image, so there "
            f"is nothing to classify. Remove them or give them a text or an image."
        )


def predict(
    model,
    processor,
    texts,
    images=None,
    batch_size=32,
    autocast_dtype=None,
    device=None,
    on_invalid_image="raise",
):
    """Classify tweets, each with an optional image, and return one result per tweet in input order.

    Args:
        model: an `M2SAForSequenceClassification` (any device; put in eval mode here).
        processor: its `M2SAProcessor`.
        texts: list of tweet texts ("" for a tweet that is only an image).
        images: None, or a list with one image (PIL, path, bytes, numpy array) or None per tweet.
        batch_size: tweets per forward pass. Tweets are sorted by token count so each batch pads little.
        autocast_dtype: None for full precision, or "bf16" to run under bfloat16 autocast (CPU or GPU).
        device: where to run; defaults to the model's device.
        on_invalid_image: "raise" (default) stops at the first unusable image with its index and reason;
            "text_only" classifies such tweets from their text and reports the reason in `image_error`.

    Returns:
        A list of dicts: `label`, `score` (its probability), `probabilities` ({label: probability} for all classes),
        `image_used` (bool) and `image_error` (None, or why the image was not used).
    """
    if autocast_dtype not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast_dtype must be one of {list(AUTOCAST_DTYPES)}, got {autocast_dtype!r}.")
    if on_invalid_image not in INVALID_IMAGE_POLICIES:
        raise ValueError(f"on_invalid_image must be one of {INVALID_IMAGE_POLICIES}, got {on_invalid_image!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    texts = as_text_list(texts)
    images = as_image_list(images, len(texts), single_text=False)
    _check_inputs(model, texts, images)
    if not texts:
        return []

    device = torch.device(device) if device is not None else model.device
    dtype = AUTOCAST_DTYPES[autocast_dtype]
    if dtype is not None and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            "This CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX), so bf16 autocast is much slower than "
            "fp32 here; use autocast_dtype=None on this machine.",
            stacklevel=2,
        )
    id2label = model.config.id2label
    model.eval()
    token_counts = [len(ids) for ids in processor.tokenize(texts, padding=False, return_tensors=None)["input_ids"]]
    order = sorted(range(len(texts)), key=token_counts.__getitem__, reverse=True)
    probabilities = [None] * len(texts)
    image_errors = {}
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            encoded = processor.encode_tweets(
                [texts[i] for i in indices], [images[i] for i in indices], on_invalid_image=on_invalid_image,
                row_ids=indices,
            )
            image_errors.update(encoded.image_errors)
            inputs = {key: value.to(device) for key, value in encoded.inputs.items()}
            batch_probabilities = model(**inputs).logits.float().softmax(dim=-1).cpu()
            for row, index in enumerate(indices):
                probabilities[index] = batch_probabilities[row]

    results = []
    for index, row in enumerate(probabilities):
        best = int(row.argmax())
        results.append(
            {
                "label": id2label[best],
                "score": float(row[best]),
                "probabilities": {id2label[k]: float(p) for k, p in enumerate(row)},
                "image_used": images[index] is not None and index not in image_errors,
                "image_error": image_errors.get(index),
            }
        )
    return results

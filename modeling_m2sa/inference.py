"""`predict`: the M2SA pipeline as a function of (model, processor, texts, images), for code that holds a loaded
model rather than a pipeline. It adds each tweet's probabilities of every class to the pipeline's result."""

from .pipeline_m2sa import DEFAULT_BATCH_SIZE, M2SASentimentPipeline
from .processing_m2sa import as_image_list, as_text_list


def predict(
    model,
    processor,
    texts,
    images=None,
    batch_size=DEFAULT_BATCH_SIZE,
    autocast_dtype=None,
    device=None,
    on_invalid_image="raise",
    backend=None,
):
    """Classify tweets, each with an optional image, and return one result per tweet in input order.

    Args:
        model: an `M2SAForSequenceClassification` (put in eval mode here).
        processor: its `M2SAProcessor`.
        texts: list of tweet texts ("" for a tweet that is only an image).
        images: None, or a list with one image (PIL, path, bytes, numpy array) or None per tweet.
        batch_size: tweets per forward pass. Tweets are sorted by token count so each batch pads little.
        autocast_dtype: None, or "bf16" to run the fp32 model under bfloat16 autocast (`backend="bf16"` is faster).
        device: where to run; defaults to the model's device.
        on_invalid_image: "raise" (default) stops at the first unusable image with its index and reason;
            "text_only" classifies such tweets from their text and reports the reason in `image_error`.
        backend: "auto" (the fastest that agrees with fp32 on this machine: bf16 on CPUs with AMX, int8 on CPUs
            with AVX512-VNNI, each checked once per process against fp32; fp32 on other CPUs and GPUs), "fp32"
            (exact), "bf16" or "int8" (see `backends_m2sa`; the converted linear layers are made on first use and
            reused while `model` is unchanged). Default: the model config's
            `inference_backend` ("auto" unless set by `python -m modeling_m2sa.export`).

    Returns:
        A list of dicts: `label`, `score` (its probability), `probabilities` ({label: probability} for all classes),
        `image_used` (bool) and `image_error` (None, or why the image was not used).
    """
    texts = as_text_list(texts)
    images = as_image_list(images, len(texts), single_text=False)
    if not texts:
        return []
    classify = M2SASentimentPipeline(model=model, processor=processor, device=device or model.device)
    ranked_per_tweet = classify(
        [{"text": text, "image": image} for text, image in zip(texts, images)],
        batch_size=batch_size, top_k=None, autocast_dtype=autocast_dtype, on_invalid_image=on_invalid_image,
        backend=backend,
    )
    results = []
    for ranked in ranked_per_tweet:
        best = ranked[0]
        results.append({"label": best["label"], "score": best["score"], "probabilities": classify.scores_by_label(ranked),
                        "image_used": best["image_used"], "image_error": best["image_error"]})
    return results

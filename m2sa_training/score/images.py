"""The images of a corpus being scored, made ready for the pipeline: one value per row in, one `ReadyImage` out.

A row's image may be a `datasets` image (`{"bytes", "path"}`), encoded bytes, or a string: a local path (relative to
the dataset's directory, else to the working directory) or an http(s) URL, mixed freely in one column; None or "" is
a tweet without an image. URLs are fetched with a timeout over the whole download, a size cap (checked against
`Content-Length` first, then while reading) and retries for what may pass (timeouts, dropped connections, HTTP 429
and 5xx). Every image is checked against the pixel cap from its header before the pipeline decodes it.

An image that cannot be used becomes a reason (`code`, `message`) on its row, never an exception: the row is then
classified from its text (or, without text, reported unscored).
"""

import io
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from modeling_m2sa.images_m2sa import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    UNREADABLE_IMAGE,
    decoding_error_text,
    image_dimensions,
)

URL_SCHEMES = ("http://", "https://")
USER_AGENT = "m2sa-score"
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


@dataclass(frozen=True)
class ReadyImage:
    """A row's image for the pipeline: `image` (encoded bytes or a local path; None without one), or why it cannot
    be used (`code`, `message`)."""

    image: object = None
    code: str | None = None
    message: str | None = None

    @property
    def usable(self):
        return self.image is not None


NO_IMAGE = ReadyImage()


class ImageUnusable(Exception):
    """Why an image cannot be used (`code`, message); `retryable` when fetching it again may succeed."""

    def __init__(self, code, message, retryable=None):
        super().__init__(message)
        self.code = code
        self.retryable = code in ("timeout", "connection_error") if retryable is None else retryable


def ready_image(value, root, limits):
    """The `ReadyImage` of one row's image `value` (see the module docstring); never raises for a bad image."""
    try:
        image = _located_image(value, root, limits)
        if image is not None:
            _check_header(image, limits)
        return ReadyImage(image=image)
    except ImageUnusable as problem:
        return ReadyImage(code=problem.code, message=str(problem))


def _located_image(value, root, limits):
    """Encoded bytes or a local path for `value`; None for no image."""
    if isinstance(value, dict):  # `datasets.Image(decode=False)`: bytes when embedded, else a path (or URL)
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value) or None
    if not isinstance(value, str):
        raise ImageUnusable("unsupported_type", f"an image value of type {type(value).__name__}; the image column "
                                                f"must hold images, image bytes, paths or http(s) URLs")
    value = value.strip()
    if value.lower().startswith(URL_SCHEMES):
        return fetch_url(value, limits)
    path = Path(value)
    candidates = [path] if path.is_absolute() or root is None else [Path(root) / path, path]
    found = next((candidate for candidate in candidates if candidate.is_file()), None)
    if found is None:
        raise ImageUnusable("missing_file", f"no file at {value!r}")
    if found.stat().st_size > limits.max_bytes:
        raise ImageUnusable("too_large", f"{value!r} is {found.stat().st_size:,} bytes, over the cap of "
                                         f"{limits.max_bytes:,}")
    return str(found)


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


def _check_header(image, limits):
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

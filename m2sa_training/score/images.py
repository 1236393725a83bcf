"""The images of a corpus being scored, made ready for the pipeline: one value per row in, one `ReadyImage` out.

A row's image may be a `datasets` image (`{"bytes", "path"}`), encoded bytes, or a string: a local path (relative to
the dataset's directory, else to the working directory) or an http(s) URL, mixed freely in one column; None or "" is
a tweet without an image. URLs are fetched by the model package's `images_m2sa.fetch_url` (a timeout over the whole
download, a size cap, retries for what may pass), as the deploy handler fetches them. Every image is checked against
the pixel cap from its header before the pipeline decodes it.

An image that cannot be used becomes a reason (`code`, `message`) on its row, never an exception: the row is then
classified from its text (or, without text, reported unscored).
"""

from dataclasses import dataclass
from pathlib import Path

from modeling_m2sa.images_m2sa import URL_SCHEMES, ImageUnusable, check_image_header, fetch_url


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


def ready_image(value, root, limits):
    """The `ReadyImage` of one row's image `value` (see the module docstring); never raises for a bad image."""
    try:
        image = _located_image(value, root, limits)
        if image is not None:
            check_image_header(image, limits)
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

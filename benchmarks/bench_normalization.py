"""Tweets as posted against tweets as distributed: does the processor's text normalisation keep a model's answers?

UMSAB's English validation tweets come with every mention written `@user` and every link `http` (XLM-T's
normalisation). Users pass tweets as posted, so each tweet is also written back as posted: each `@user` a handle
drawn from real-looking ones (case, digits, underscores), each `http` a t.co link, `&` as the Twitter API escapes it
(`&amp;`). The MiniLM model fine-tuned by train.py on UMSAB English (`benchmarks.models.umsab_english_model_dir`)
scores both forms, once with the text normalisation train.py saved with it ("twitter") and once with it off ("none",
what every model did before). Reported per setting: macro-F1 on each form with a 95 % bootstrap interval over tweets,
and the share of tweets whose label is the same on both forms (n = all tweets, and the tweets the rewriting changed).

    python -m benchmarks.bench_normalization [--model DIR]
"""

import random
from pathlib import Path

from transformers import pipeline

from benchmarks.cpu_info import cpu_description
from benchmarks.harness import benchmark_parser, model_name, require_data, write_results
from benchmarks.models import UMSAB_ENGLISH_MODEL, umsab_english_model_dir
from benchmarks.tweets import umsab_english_validation
from benchmarks.uncertainty import bootstrap_macro_f1
from dataset_script.umsab import UMSAB_LABEL_IDS, read_lines, umsab_split_files
from m2sa_training.evaluation.metrics import compute_metrics

HANDLES = ["@SenSchumer", "@realDonaldTrump", "@nasa", "@BBCBreaking", "@elonmusk", "@Cristiano", "@taylorswift13",
           "@NYTimes", "@jack", "@AOC", "@BarackObama", "@ManUtd", "@Google", "@cnnbrk", "@some_fan_1987",
           "@j_doe42", "@UEFAcom", "@WHO", "@SpaceX", "@netflix"]


def as_posted(text, rng):
    """`text` with its placeholders written back as a user posts them (word for word, spaces unchanged)."""
    words = []
    for word in text.split(" "):
        if word.startswith("@user"):
            word = rng.choice(HANDLES) + word[len("@user"):]
        elif word.startswith("http"):
            word = "https://t.co/" + "".join(rng.choices("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789",
                                                         k=10)) + word[len("http"):]
        words.append(word.replace("&", "&amp;"))
    return " ".join(words)


def predictions(classify, texts):
    return [classify.model.config.label2id[result["label"]] for result in classify(texts, batch_size=32)]


def macro_f1(labels, predicted):
    overall = compute_metrics(labels, predicted, ["en"] * len(labels))["overall"]
    return {"macro_f1": overall["macro_f1"],
            "macro_f1_95_interval": list(bootstrap_macro_f1(overall["confusion_matrix"]))}


def measure(classify, labels, distributed, posted, rewritten):
    """Scores of the model on both forms of the tweets, and how many labels the rewriting changed."""
    on_distributed, on_posted = predictions(classify, distributed), predictions(classify, posted)
    same = [a == b for a, b in zip(on_distributed, on_posted)]
    return {"distributed": macro_f1(labels, on_distributed), "as_posted": macro_f1(labels, on_posted),
            "same_label_share": sum(same) / len(same), "n": len(same),
            "same_label_share_of_rewritten": sum(s for s, r in zip(same, rewritten) if r) / sum(rewritten),
            "n_rewritten": sum(rewritten)}


def main():
    parser = benchmark_parser(__doc__, out="normalization.json", data_root=True)
    parser.add_argument("--model", type=Path, default=None,
                        help=f"a model trained on UMSAB English (default: {UMSAB_ENGLISH_MODEL.name}, trained on "
                             f"first use)")
    args = parser.parse_args()
    require_data(args.data_root, "umsab")
    distributed = umsab_english_validation(args.data_root)
    _, labels_file = umsab_split_files(args.data_root / "umsab" / "english", "val")
    labels = [UMSAB_LABEL_IDS[line.strip()] for line in read_lines(labels_file)]
    rng = random.Random(0)
    posted = [as_posted(text, rng) for text in distributed]
    rewritten = [a != b for a, b in zip(distributed, posted)]
    classify = pipeline(model=str(umsab_english_model_dir(args.model, args.data_root)), trust_remote_code=True)
    saved = classify.processor.text_normalization
    settings = {}
    for setting in (saved, "none"):
        classify.processor.text_normalization = setting
        settings[setting] = measure(classify, labels, distributed, posted, rewritten)
        print(f"{setting:>8}: macro-F1 distributed {settings[setting]['distributed']['macro_f1']:.3f}, "
              f"as posted {settings[setting]['as_posted']['macro_f1']:.3f}; same label "
              f"{settings[setting]['same_label_share']:.1%} of {len(distributed)}, "
              f"{settings[setting]['same_label_share_of_rewritten']:.1%} of the {sum(rewritten)} rewritten")
    write_results(args.out, {"cpu": cpu_description(), "model": model_name(args.model or UMSAB_ENGLISH_MODEL),
                             "saved_text_normalization": saved, "settings": settings,
                             "example": {"distributed": distributed[rewritten.index(True)],
                                         "as_posted": posted[rewritten.index(True)]}})


if __name__ == "__main__":
    main()

"""Do word attributions point at the words the model uses? A deletion test on real tweets.

Model: `outputs/m2sa-mvsa-minilm` (pretrained MiniLM text tower fine-tuned on the MVSA sample with its images;
`bench_inference` trains it on first use). Tweets: the validation and test splits of the MVSA sample as
`bench_fusion` builds it (held out from training), with their images. For every tweet with at least `k + 1`
words, the k words with the largest attribution towards the predicted label (`explain=True`) are removed, and
separately k words drawn at random (`--random-draws` draws, seeded); the drop in the predicted label's probability
is averaged over tweets. A bootstrap over tweets (2,000 resamples) gives a 95 % interval of the difference
(top-k drop minus random drop). Results: `benchmarks/results/explanations.json`.

    python -m benchmarks.bench_explanations [--k 1 2 3] [--random-draws 5]
"""

import random
import sys
import tempfile
from pathlib import Path

import datasets
from transformers import pipeline

from benchmarks.cpu_info import cpu_description
from benchmarks.harness import benchmark_parser, model_name, write_results
from benchmarks.models import MVSA_MODEL
from benchmarks.recipes import dataset_settings
from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor


def held_out_tweets(work, data_root):
    """The validation and test tweets of the MVSA sample, with their images (bytes)."""
    dataset, config, _ = dataset_settings(["mvsa"], work, data_root)["mvsa"]
    tweets = []
    for split in ("validation", "test"):
        rows = datasets.load_dataset(dataset, config, split=split).cast_column("image", datasets.Image(decode=False))
        tweets += [{"text": row["text"], "image": row["image"] and row["image"]["bytes"]} for row in rows]
    return tweets


def probability_of(pipe, tweets, labels):
    results = pipe(tweets, top_k=None, batch_size=32)
    return [pipe.scores_by_label(ranked)[label] for ranked, label in zip(results, labels)]


def without(text, positions):
    return " ".join(word for index, word in enumerate(text.split()) if index not in positions)


def bootstrap_interval(differences, resamples=2000, seed=0):
    generator = random.Random(seed)
    means = sorted(sum(generator.choices(differences, k=len(differences))) / len(differences)
                   for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples)]


def main():
    parser = benchmark_parser(__doc__, out="explanations.json", data_root=True)
    parser.add_argument("--k", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--random-draws", type=int, default=5)
    args = parser.parse_args()
    if not MVSA_MODEL.is_dir():
        sys.exit(f"{MVSA_MODEL} is missing: run `python -m benchmarks.bench_inference` once, which trains it.")
    # this package's classes and pipeline (the model folder's saved code may predate explanations)
    pipe = pipeline("m2sa-sentiment", model=M2SAForSequenceClassification.from_pretrained(MVSA_MODEL),
                    processor=M2SAProcessor.from_pretrained(MVSA_MODEL), backend="fp32")
    with tempfile.TemporaryDirectory(prefix="m2sa-explanations-") as work:
        tweets = held_out_tweets(Path(work), args.data_root)
    explained = pipe(tweets, explain=True, batch_size=16)
    generator = random.Random(0)
    report = {"cpu": cpu_description(), "model": model_name(MVSA_MODEL), "tweets": len(tweets), "k": {}}
    for k in args.k:
        report["k"][k] = deletion_test(pipe, tweets, explained, k, args.random_draws, generator)
        print(f"k={k}: {report['k'][k]}", flush=True)
    write_results(args.out, report)


def deletion_test(pipe, tweets, explained, k, random_draws, generator):
    """The drop in the predicted label's probability when the k words of largest attribution are removed, against k
    words drawn at random (`random_draws` draws), over the tweets of more than k words."""
    labels = [result["label"] for result in explained]
    before = [result["score"] for result in explained]
    rows = [index for index, tweet in enumerate(tweets) if len(tweet["text"].split()) > k]
    top_texts, random_texts = [], []
    for index in rows:
        words = explained[index]["explanation"]["words"]
        ranked = sorted(range(len(words)), key=lambda position: words[position][1], reverse=True)
        top_texts.append(without(tweets[index]["text"], set(ranked[:k])))
        random_texts.append([without(tweets[index]["text"], set(generator.sample(range(len(words)), k)))
                             for _ in range(random_draws)])
    row_labels = [labels[index] for index in rows]
    top_after = probability_of(pipe, [{**tweets[index], "text": text} for index, text in zip(rows, top_texts)],
                               row_labels)
    random_after = [probability_of(pipe, [{**tweets[index], "text": draws[draw]}
                                          for index, draws in zip(rows, random_texts)], row_labels)
                    for draw in range(random_draws)]
    top_drop = [before[index] - after for index, after in zip(rows, top_after)]
    random_drop = [before[index] - sum(draw[position] for draw in random_after) / random_draws
                   for position, index in enumerate(rows)]
    differences = [top - rand for top, rand in zip(top_drop, random_drop)]
    return {"tweets": len(rows), "mean_drop_top_k": sum(top_drop) / len(rows),
            "mean_drop_random_k": sum(random_drop) / len(rows), "mean_difference": sum(differences) / len(rows),
            "difference_95_interval": bootstrap_interval(differences)}


if __name__ == "__main__":
    main()

"""Tweets as posted: the processor writes mentions as `@user` and links as `http` (XLM-T's convention) before the
model reads them, saved with the processor, so a model trained on normalised text answers the same on the raw forms
of those tweets everywhere text meets it: the pipeline, the scorer, the Space, the collator and the explanations."""

import json
import sys

import pytest
import torch
from datasets import load_dataset

from conftest import REPO_ROOT
from modeling_m2sa import M2SAProcessor
from modeling_m2sa.errors_m2sa import M2SAError
from modeling_m2sa.normalization_m2sa import normalize_tweet

sys.path.insert(0, str(REPO_ROOT / "space"))
import app as space_app  # noqa: E402  (space/ is a Space repo, not a package)

NORMALISED = [
    ("RT @SenSchumer: good news", "RT @user: good news"),
    ("(@nasa) @Elon_Musk's rocket, @a1", "(@user) @user's rocket, @user"),
    ("@user @USER @User", "@user @user @user"),
    ("mail me@nasa.gov or @@x", "mail me@nasa.gov or @@x"),  # an address and a doubled @ are not mentions
    ("see https://t.co/x8Kd0aQ2Lm. now", "see http. now"),
    ("HTTP://Example.com/a?b=1, www.nasa.gov and t.co/AbC!", "http, http and http!"),
    ("http http://x.y", "http http"),
    ("Tom &amp; Jerry &lt;3 &gt; &quot;hi&quot;", 'Tom & Jerry <3 > "hi"'),
    ("no change here", "no change here"),
]


@pytest.mark.parametrize(("raw", "normalised"), NORMALISED)
def test_mentions_links_and_entities_are_written_as_xlm_t_writes_them(raw, normalised):
    assert normalize_tweet(raw) == normalised
    assert normalize_tweet(normalised) == normalised  # idempotent on normalised text
    assert len(normalize_tweet(raw).split()) == len(raw.split())  # word for word
    assert normalize_tweet(raw, "none") == raw


def test_the_normalisation_is_saved_with_the_processor_and_absent_means_none(tiny_towers, tmp_path):
    processor = M2SAProcessor.from_towers(tiny_towers["xlm-roberta"], text_normalization="twitter")
    processor.save_pretrained(tmp_path)
    config_file = tmp_path / "processor_config.json"
    assert json.loads(config_file.read_text())["text_normalization"] == "twitter"
    assert M2SAProcessor.from_pretrained(tmp_path).text_normalization == "twitter"
    saved = json.loads(config_file.read_text())
    del saved["text_normalization"]  # a processor saved without the setting reads tweets as given
    config_file.write_text(json.dumps(saved))
    assert M2SAProcessor.from_pretrained(tmp_path).text_normalization == "none"
    with pytest.raises(M2SAError, match="text_normalization must be one of") as error:
        M2SAProcessor.from_towers(tiny_towers["xlm-roberta"], text_normalization="xlm-t")
    assert error.value.code == "bad_option"


def raw_forms(texts):
    """Each text as a user would post it: every `@user` a real-looking handle, every `http` a t.co link, `&` escaped
    as the Twitter API delivers it, and a trailing link after punctuation on every tweet."""
    handles = ["@SenSchumer", "@elon_musk", "@NASA", "@a_b_c_123", "@realDonaldTrump"]
    raw = []
    for index, text in enumerate(texts):
        words = []
        for position, word in enumerate(text.split()):
            if word == "@user":
                word = handles[(index + position) % len(handles)]
            elif word == "http":
                word = f"https://t.co/x{index}Kd0aQ2L"
            words.append(word.replace("&", "&amp;"))
        words.append(f"https://t.co/{index}Zq." if index % 2 else f"www.nasa.gov/{index}!")
        text = f"{text} http." if index % 2 else f"{text} http!"
        raw.append((" ".join(words), text))
    return raw


@pytest.fixture(scope="module")
def demo_tweets(main_job_workdir):
    """(raw, normalised) pairs from the demo test split, whose texts the main job's model was trained like."""
    test = load_dataset(str(main_job_workdir / ".cache" / "m2sa" / "demo-dataset"), "en", split="test")
    texts = [text for text in test["text"] if "@user" in text][:12] + list(test["text"][:4])
    return raw_forms(texts)


@pytest.fixture(scope="module")
def trained_pipeline(main_job_workdir):
    from transformers import pipeline

    return pipeline(model=str(main_job_workdir / "outputs" / "m2sa-demo"), trust_remote_code=True)


def test_a_model_trained_by_train_py_answers_the_same_on_raw_tweets(trained_pipeline, demo_tweets):
    assert trained_pipeline.processor.text_normalization == "twitter"  # train.py's default, saved with the model
    raw, normalised = zip(*demo_tweets)
    assert sum("@user" in text for text in normalised) >= 8 and all(r != n for r, n in zip(raw, normalised))
    assert trained_pipeline(list(raw), top_k=None) == trained_pipeline(list(normalised), top_k=None)
    # the collator's path (`encode_tweets`, which `Trainer` uses with the processor as collator) reads them alike
    processor = trained_pipeline.processor
    raw_ids = processor.encode_tweets(list(raw)).inputs["input_ids"]
    assert torch.equal(raw_ids, processor.encode_tweets(list(normalised)).inputs["input_ids"])
    assert torch.equal(processor(text=list(raw))["input_ids"], raw_ids)  # processor(...), as a Trainer collator calls it
    assert not torch.equal(raw_ids, M2SAProcessor(processor.image_processor, processor.tokenizer,
                                                   max_length=processor.max_length).tokenize(list(raw))["input_ids"])


def test_the_scorer_and_the_space_read_raw_tweets_as_the_model_does(main_job_workdir, trained_pipeline, demo_tweets,
                                                                    tmp_path):
    import pyarrow.parquet as pq

    from m2sa_training.score.run import main

    labels = {}
    for form, texts in zip(("raw", "normalised"), zip(*demo_tweets)):
        corpus = tmp_path / f"{form}.jsonl"
        corpus.write_text("".join(json.dumps({"id": index, "text": text}) + "\n" for index, text in enumerate(texts)))
        main(["--model", str(main_job_workdir / "outputs" / "m2sa-demo"), "--dataset", str(corpus),
              "--output-dir", str(tmp_path / form)])
        table = pq.read_table(tmp_path / form / "data" / "train-00000.parquet")  # ids, labels, probabilities
        labels[form] = table.to_pylist()
    assert labels["raw"] == labels["normalised"] and len(labels["raw"]) == len(demo_tweets)
    for raw, normalised in demo_tweets[:4]:
        assert space_app.classify_tweet(trained_pipeline, raw, None) == \
            space_app.classify_tweet(trained_pipeline, normalised, None)


def test_explanations_name_the_words_as_written(trained_pipeline, demo_tweets):
    pytest.importorskip("captum")
    raw, normalised = next(pair for pair in demo_tweets if "@" in pair[0] and "https" in pair[0])
    explained_raw = trained_pipeline([raw], explain=True, n_steps=8)[0]["explanation"]["words"]
    explained_normalised = trained_pipeline([normalised], explain=True, n_steps=8)[0]["explanation"]["words"]
    assert [word for word, _ in explained_raw] == raw.split()
    assert [attribution for _, attribution in explained_raw] == pytest.approx(
        [attribution for _, attribution in explained_normalised], abs=1e-6)

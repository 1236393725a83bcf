"""`pipeline(model=DIR, trust_remote_code=True)` on a saved model, with nothing but transformers: the same
probabilities as `predict`, text-classification conventions, and clear errors."""

import io
import json
import textwrap

import pytest
import torch
from PIL import Image
from transformers import pipeline

from conftest import run_without_package
from modeling_m2sa import PIPELINE_TASK, M2SAForSequenceClassification, M2SAProcessor, M2SASentimentPipeline, predict

CHILD = textwrap.dedent(
    """
    import json, sys
    from transformers import pipeline

    model_dir, cases_path, out_path = sys.argv[1:4]
    cases = json.load(open(cases_path))
    pipe = pipeline(model=model_dir, trust_remote_code=True)
    out = {"class": type(pipe).__module__ + "." + type(pipe).__name__, "task": pipe.task, "cases": {}}
    for name, case in cases.items():
        tweets = [{"text": text, "image": image} for text, image in zip(case["texts"], case["images"])]
        try:
            out["cases"][name] = pipe(tweets, top_k=None, batch_size=2, on_invalid_image=case["policy"])
        except Exception as error:
            out["cases"][name] = {"error": type(error).__name__, "message": str(error)}
    out["single"] = pipe(cases["mixed"]["texts"][0])
    out["single_with_image"] = pipe({"text": "look at this", "image": cases["mixed"]["images"][1]})
    text_classifier = pipeline("text-classification", model=model_dir, trust_remote_code=True)
    out["text_classification"] = text_classifier(cases["text_only"]["texts"], top_k=None)
    json.dump(out, open(out_path, "w"))
    """
)


def pipeline_cases(image_files):
    texts = ["Qué día tan bonito en la playa, me encanta!", "ok", "Das ist schrecklich und langweilig, wirklich",
             "kurz"]
    return {
        "text_only": {"texts": texts, "images": [None] * 4, "policy": "raise"},
        "image_only": {"texts": [""] * 3, "images": [image_files["red"], image_files["green"], image_files["red"]],
                       "policy": "raise"},
        "mixed": {"texts": [texts[0], "", texts[2], texts[3]],
                  "images": [None, image_files["red"], image_files["green"], None], "policy": "raise"},
        "invalid_text_only": {"texts": texts[:3], "images": [image_files["red"], image_files["corrupt"], None],
                              "policy": "text_only"},
        "invalid_raise": {"texts": texts[:3], "images": [image_files["red"], image_files["corrupt"], None],
                          "policy": "raise"},
    }


@pytest.fixture(scope="module")
def child_results(saved_tiny_model_dir, image_files, tmp_path_factory):
    """What the pipeline returns in a fresh process where the M2SA package cannot be imported."""
    work = tmp_path_factory.mktemp("pipeline-child")
    cases_path, out_path = work / "cases.json", work / "out.json"
    cases_path.write_text(json.dumps(pipeline_cases(image_files)))
    result = run_without_package(CHILD, saved_tiny_model_dir, cases_path, out_path, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out_path.read_text())


def test_saved_model_names_its_pipeline_and_carries_its_code(saved_tiny_model_dir):
    config = json.loads((saved_tiny_model_dir / "config.json").read_text())
    assert config["custom_pipelines"] == {
        PIPELINE_TASK: {"impl": "pipeline_m2sa.M2SASentimentPipeline", "pt": ["AutoModelForSequenceClassification"],
                        "tf": [], "type": "multimodal"}
    }
    assert (saved_tiny_model_dir / "pipeline_m2sa.py").is_file()


def test_pipeline_without_the_package_is_the_saved_remote_code(child_results):
    assert child_results["class"].startswith("transformers_modules.")
    assert child_results["class"].endswith("pipeline_m2sa.M2SASentimentPipeline")
    assert child_results["task"] == PIPELINE_TASK


@pytest.mark.parametrize("case", ["text_only", "image_only", "mixed", "invalid_text_only"])
def test_pipeline_probabilities_equal_predict(child_results, tiny_model_and_processor, image_files, case):
    model, processor = tiny_model_and_processor
    spec = pipeline_cases(image_files)[case]
    expected = predict(model, processor, spec["texts"], spec["images"], on_invalid_image=spec["policy"])
    got = child_results["cases"][case]
    assert len(got) == len(expected)
    for ranked, reference in zip(got, expected):
        assert ranked[0]["label"] == reference["label"]
        assert [entry["score"] for entry in ranked] == sorted((entry["score"] for entry in ranked), reverse=True)
        for entry in ranked:
            assert entry["score"] == pytest.approx(reference["probabilities"][entry["label"]], abs=1e-6)
            assert entry["image_used"] is reference["image_used"]
            assert entry["image_error"] == reference["image_error"]
    if case == "invalid_text_only":
        assert [ranked[0]["image_used"] for ranked in got] == [True, False, False]
        assert "could not be decoded" in got[1][0]["image_error"]


def test_invalid_image_with_raise_names_the_tweet(child_results):
    outcome = child_results["cases"]["invalid_raise"]
    assert outcome["error"] == "InvalidImageError"
    assert outcome["message"].startswith("image 1 could not be decoded")


def test_single_tweet_gives_a_list_of_one_result(child_results, tiny_model_and_processor, image_files):
    model, processor = tiny_model_and_processor
    text = pipeline_cases(image_files)["mixed"]["texts"][0]
    (reference,) = predict(model, processor, [text])
    assert child_results["single"] == [
        {"label": reference["label"], "score": pytest.approx(reference["score"], abs=1e-6), "image_used": False,
         "image_error": None, "image_error_code": None}
    ]
    (with_image,) = child_results["single_with_image"]
    assert with_image["image_used"] is True


def test_text_classification_pipeline_reads_the_text(child_results, tiny_model_and_processor, image_files):
    model, processor = tiny_model_and_processor
    texts = pipeline_cases(image_files)["text_only"]["texts"]
    for ranked, reference in zip(child_results["text_classification"],
                                   predict(model, processor, texts, backend="fp32")):
        assert {entry["label"]: entry["score"] for entry in ranked} == pytest.approx(reference["probabilities"],
                                                                                      abs=1e-5)


@pytest.fixture(scope="module")
def pipe(saved_tiny_model_dir):
    # fp32: these tests compare scores with the model's own logits to 1e-6 (the fast backends: test_backends.py)
    return pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True, backend="fp32")


def test_top_k_and_function_to_apply_follow_text_classification(pipe, image_files):
    tweet = {"text": "I love it", "image": image_files["red"]}
    inputs = pipe.processor(text=["I love it"], images=[Image.open(image_files["red"])])
    with torch.no_grad():
        logits = pipe.model(**inputs).logits[0]
    (best,) = pipe(tweet)
    assert set(best) == {"label", "score", "image_used", "image_error", "image_error_code"}
    assert best["label"] == pipe.model.config.id2label[int(logits.argmax())]
    assert best["score"] == pytest.approx(float(logits.softmax(-1).max()), abs=1e-6)
    top_two = pipe(tweet, top_k=2)
    assert [entry["label"] for entry in top_two] == [pipe.model.config.id2label[int(k)]
                                                     for k in logits.argsort(descending=True)[:2]]
    raw = pipe(tweet, top_k=None, function_to_apply="none")
    assert {entry["label"]: entry["score"] for entry in raw} == pytest.approx(
        {pipe.model.config.id2label[k]: float(value) for k, value in enumerate(logits)}, abs=1e-5)
    sigmoid = pipe(tweet, top_k=None, function_to_apply="sigmoid")
    assert {entry["label"]: entry["score"] for entry in sigmoid} == pytest.approx(
        {pipe.model.config.id2label[k]: float(value) for k, value in enumerate(logits.sigmoid())}, abs=1e-6)


def test_length_sorted_batches_keep_input_order(pipe, image_files):
    tweets = [{"text": "word " * length, "image": image_files["red"] if length % 2 else None}
              for length in (3, 40, 1, 17, 8, 25, 2)]
    one_at_a_time = [pipe(tweet, top_k=None) for tweet in tweets]
    batched = pipe(tweets, batch_size=3, top_k=None)
    for got, expected in zip(batched, one_at_a_time):
        assert {e["label"]: e["score"] for e in got} == pytest.approx({e["label"]: e["score"] for e in expected},
                                                                      abs=1e-5)


def test_generator_input_streams_results(pipe):
    texts = ["one", "two words", "three words here", "four", "five"]
    streamed = pipe((text for text in texts), batch_size=2, top_k=None)
    assert not isinstance(streamed, list)
    got = [pipe.scores_by_label(ranked) for ranked in streamed]
    one_at_a_time = [pipe.scores_by_label(pipe(text, top_k=None)) for text in texts]
    # The untrained model gives every text the same label but each its own probabilities: a result out of place shows.
    assert all(max(abs(first[label] - second[label]) for label in first) > 1e-4
               for index, first in enumerate(one_at_a_time) for second in one_at_a_time[index + 1:])
    for streamed_scores, expected in zip(got, one_at_a_time, strict=True):
        assert streamed_scores == pytest.approx(expected, abs=1e-5)


def test_datasets_dataset_streams_results(pipe, image_files):
    import datasets

    rows = datasets.Dataset.from_dict(
        {"text": ["one", "", "three words here"], "image": [None, image_files["red"], image_files["green"]],
         "label": [0, 1, 2]},
        features=datasets.Features({"text": datasets.Value("string"), "image": datasets.Image(),
                                    "label": datasets.Value("int64")}),
    )
    streamed = list(pipe(rows.select_columns(["text", "image"]), batch_size=2, top_k=None))
    tweets = [{"text": "one"}, {"image": image_files["red"]}, {"text": "three words here", "image": image_files["green"]}]
    expected = pipe(tweets, top_k=None)
    for got, reference in zip(streamed, expected):
        assert {e["label"]: e["score"] for e in got} == pytest.approx({e["label"]: e["score"] for e in reference},
                                                                      abs=1e-5)
    assert [ranked[0]["image_used"] for ranked in streamed] == [False, True, True]
    with pytest.raises(ValueError, match="select_columns"):
        list(pipe(rows))


def test_task_name_works_with_a_model_object(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    pipe = pipeline(PIPELINE_TASK, model=model, processor=processor)
    assert isinstance(pipe, M2SASentimentPipeline)
    assert pipe("hello")[0]["label"] in model.config.id2label.values()


@pytest.mark.parametrize(
    "tweets, error, message",
    [
        ([{"text": "hi", "imgae": "x.png"}], ValueError, r"unknown keys \['imgae'\]"),
        ([42], TypeError, "Tweet 0 is a int"),
        (["fine", {"text": "  ", "image": None}], ValueError, "Tweets 1 have empty text and no image"),
        ([{"text": "hi", "image": b"not an image"}], ValueError, "image 0 could not be decoded"),
    ],
)
def test_bad_tweets_are_refused_with_what_to_do(pipe, tweets, error, message):
    with pytest.raises(error, match=message):
        pipe(tweets)


def test_bad_parameters_are_refused(pipe):
    for kwargs, message in (({"top_k": 0}, "top_k"), ({"function_to_apply": "relu"}, "function_to_apply"),
                            ({"on_invalid_image": "skip"}, "on_invalid_image"), ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=message):
            pipe("hello", **kwargs)


def test_text_only_model_refuses_an_image(tiny_towers):
    model = M2SAForSequenceClassification.from_towers(tiny_towers["bert"])
    pipe = M2SASentimentPipeline(model=model, processor=M2SAProcessor.from_towers(tiny_towers["bert"]), device="cpu")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    with pytest.raises(ValueError, match=r"text-only .* tweets \[1\] have an image"):
        pipe(["a", {"text": "b", "image": buffer.getvalue()}])

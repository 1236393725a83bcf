"""The Inference Endpoints handler a saved classifier carries (`handler.py`), run as an endpoint runs it: in a fresh
process where the M2SA package cannot be imported, loaded from the model folder, images as base64 or URLs served by a
loopback server (good, missing, not an image)."""

import base64
import json
import textwrap

import pytest
from transformers import pipeline

from conftest import run_without_package
from test_score import IMAGE_BODIES, image_server  # noqa: F401  (the loopback image server fixture)

ENDPOINT = textwrap.dedent(
    """
    import base64, importlib.util, io, json, sys
    from PIL import Image
    model_dir, requests_path, out_path = sys.argv[1:4]
    # as Inference Endpoints' toolkit loads it (utils.check_and_register_custom_pipeline_from_directory)
    spec = importlib.util.spec_from_file_location("handler.EndpointHandler", f"{model_dir}/handler.py")
    sys.path.insert(0, model_dir)
    handler_module = importlib.util.module_from_spec(spec)
    sys.modules["handler.EndpointHandler"] = handler_module
    spec.loader.exec_module(handler_module)
    handler = handler_module.EndpointHandler(model_dir)
    answers = {}
    for name, request in json.load(open(requests_path)).items():
        if "image_body" in request:  # the toolkit's image deserializer (serialization/image_utils.Imager)
            request = {"inputs": Image.open(io.BytesIO(base64.b64decode(request["image_body"]))).convert("RGB")}
        try:
            answers[name] = handler(request)
        except Exception as error:
            answers[name] = {"error": type(error).__name__, "message": str(error)}
    json.dump(answers, open(out_path, "w"))
    """
)
TEXT = "What a lovely day at the beach with my friends!"


def requests(image_server):  # noqa: F811
    ok_png = base64.b64encode(IMAGE_BODIES["/ok.png"]).decode()
    return {
        "text": {"inputs": TEXT},
        "base64": {"inputs": {"text": TEXT, "image": ok_png}},
        "data_uri": {"inputs": {"text": TEXT, "image": f"data:image/png;base64,{ok_png}"}},
        "url": {"inputs": {"text": TEXT, "image": f"{image_server}/ok.png"}},
        "url_404": {"inputs": {"text": TEXT, "image": f"{image_server}/missing.png"}},
        "url_not_an_image": {"inputs": {"text": TEXT, "image": f"{image_server}/page.html"}},
        "not_base64": {"inputs": {"text": TEXT, "image": "this is no image"}},
        "list": {"inputs": [TEXT, {"text": "", "image": ok_png}, {"text": "", "image": f"{image_server}/missing.png"}]},
        "parameters": {"inputs": {"text": TEXT, "image": ok_png},
                       "parameters": {"top_k": None, "detect_language": True, "explain": True, "n_steps": 4}},
        "nothing_top_k": {"inputs": [{"text": "", "image": f"{image_server}/missing.png"}, TEXT],
                          "parameters": {"top_k": None}},
        "raise": {"inputs": {"text": TEXT, "image": f"{image_server}/missing.png"},
                  "parameters": {"on_invalid_image": "raise"}},
        "image_body": {"image_body": ok_png},
        # query-string parameters as the toolkit passes them: strings, digits made ints, "true"/"false" booleans
        "query_all": {"inputs": TEXT, "parameters": {"top_k": "all", "function_to_apply": "none"}},
        "query_two": {"inputs": TEXT, "parameters": {"top_k": 2, "detect_language": "True"}},
        "not_a_request": {"text": TEXT},
        "not_a_tweet": {"inputs": [TEXT, 42]},
    }


@pytest.fixture(scope="module")
def model_dir(saved_tiny_model_dir, tmp_path_factory):
    """The tiny model set to serve fp32: the endpoint's process and this one then compute alike, where "auto" could
    pick another arithmetic in each (its probe times kernels, and a busy machine can swing it)."""
    from modeling_m2sa.export import export

    return export(saved_tiny_model_dir, tmp_path_factory.mktemp("fp32-model"), backend="fp32")


@pytest.fixture(scope="module")
def answers(model_dir, image_server, tmp_path_factory):  # noqa: F811
    assert (model_dir / "handler.py").is_file()  # save_pretrained put it there
    work = tmp_path_factory.mktemp("endpoint")
    (work / "requests.json").write_text(json.dumps(requests(image_server)))
    result = run_without_package(ENDPOINT, model_dir, work / "requests.json", work / "answers.json",
                                 cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((work / "answers.json").read_text())


@pytest.fixture(scope="module")
def pipe(model_dir):
    return pipeline(model=str(model_dir), trust_remote_code=True)


def same_answer(answer, expected):
    assert answer["label"] == expected["label"]
    assert answer["score"] == pytest.approx(expected["score"], abs=1e-5)


def test_a_text_gets_the_pipelines_answer(answers, pipe):
    (answer,) = answers["text"]
    same_answer(answer, pipe(TEXT)[0])
    assert answer["image_used"] is False and answer["image_error_code"] is None


@pytest.mark.parametrize("request_name", ["base64", "data_uri", "url"])
def test_an_image_as_base64_or_url_is_the_image_itself(answers, pipe, request_name):
    (answer,) = answers[request_name]
    same_answer(answer, pipe({"text": TEXT, "image": IMAGE_BODIES["/ok.png"]})[0])
    assert answer["image_used"] is True and answer["image_error"] is None


@pytest.mark.parametrize(("request_name", "code", "words"), [
    ("url_404", "http_error", "answered HTTP 404"),
    ("url_not_an_image", "undecodable", "not an image"),
    ("not_base64", "undecodable", "neither an http(s) URL nor valid base64"),
])
def test_an_unusable_image_gives_its_code_and_a_text_only_label(answers, pipe, request_name, code, words):
    (answer,) = answers[request_name]
    same_answer(answer, pipe(TEXT)[0])  # classified from its text
    assert answer["image_used"] is False and answer["image_error_code"] == code and words in answer["image_error"]


def test_a_list_gets_one_answer_per_tweet_in_order(answers, pipe):
    text_only, image_only, nothing = answers["list"]
    same_answer(text_only, pipe(TEXT)[0])
    same_answer(image_only, pipe({"text": "", "image": IMAGE_BODIES["/ok.png"]})[0])
    assert image_only["image_used"] is True
    # no text, and its image is a 404: nothing to classify, and the answer says so instead of failing the request
    assert nothing["label"] is None and nothing["unscored_reason"] == "empty_tweet"
    assert nothing["image_error_code"] == "http_error"


def test_parameters_reach_the_pipeline(answers, pipe):
    ranked = answers["parameters"]
    expected = pipe({"text": TEXT, "image": IMAGE_BODIES["/ok.png"]}, top_k=None)
    assert [entry["label"] for entry in ranked] == [entry["label"] for entry in expected]  # top_k=None: every label
    assert [entry["score"] for entry in ranked] == pytest.approx([entry["score"] for entry in expected], abs=1e-5)
    assert {(entry["language"], entry["language_in_training"]) for entry in ranked} == {("en", None)}
    explanation = ranked[0]["explanation"]  # explain=True: the best label's word attributions
    assert [word for word, _ in explanation["words"]] == TEXT.split()


def test_image_problems_raise_when_asked_and_bad_requests_say_what_to_do(answers):
    assert answers["raise"]["error"] == "ValueError"
    assert "The image of input 0 cannot be used" in answers["raise"]["message"]
    assert "(http_error)" in answers["raise"]["message"]
    assert answers["not_a_request"]["error"] == "ValueError"
    assert '"inputs" holds a text' in answers["not_a_request"]["message"]
    assert "Input 1 is not a tweet" in answers["not_a_tweet"]["message"]


def test_with_top_k_a_tweet_with_nothing_to_classify_answers_in_the_same_shape(answers):
    nothing, ranked = answers["nothing_top_k"]
    assert len(ranked) == 3 and [entry["label"] for entry in nothing] == [None]
    assert nothing[0]["unscored_reason"] == "empty_tweet" and nothing[0]["image_error_code"] == "http_error"


def test_an_image_body_is_classified_from_the_image_alone(answers, pipe):
    (answer,) = answers["image_body"]
    same_answer(answer, pipe({"text": "", "image": IMAGE_BODIES["/ok.png"]})[0])
    assert answer["image_used"] is True


def test_query_string_parameters_are_read_as_the_pipeline_takes_them(answers, pipe):
    every_label = answers["query_all"]
    expected = pipe(TEXT, top_k=None, function_to_apply="none")
    assert [entry["label"] for entry in every_label] == [entry["label"] for entry in expected]
    assert [entry["score"] for entry in every_label] == pytest.approx([entry["score"] for entry in expected],
                                                                      abs=1e-5)
    assert len(answers["query_two"]) == 2 and answers["query_two"][0]["language"] == "en"


def test_a_text_only_model_refuses_an_image_body_saying_what_to_send(tiny_towers, tmp_path):
    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

    model_dir = tmp_path / "text-only"
    M2SAForSequenceClassification.from_towers(tiny_towers["xlm-roberta"]).save_pretrained(model_dir)
    M2SAProcessor.from_towers(tiny_towers["xlm-roberta"]).save_pretrained(model_dir)
    requests_path = tmp_path / "requests.json"
    requests_path.write_text(json.dumps({"image_body": {"image_body": base64.b64encode(IMAGE_BODIES["/ok.png"])
                                                        .decode()}, "text": {"inputs": TEXT}}))
    result = run_without_package(ENDPOINT, model_dir, requests_path, tmp_path / "answers.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads((tmp_path / "answers.json").read_text())
    assert answers["image_body"]["error"] == "ValueError"
    assert "This model is text-only" in answers["image_body"]["message"]
    assert "application/json" in answers["image_body"]["message"]
    assert answers["text"][0]["label"] in ("negative", "neutral", "positive")

"""A model `python train.py` wrote, served where Inference Endpoints serve it: by their toolkit's own server (vendored
in ../shared/vendor) on the transformers it pins (4.51.3), after installing the model's requirements.txt as its
entrypoint does; and the same model's pipeline under 4.51.3 in a fresh process that cannot import this package. Both
must give the answers its pipeline gives here, under transformers 5.

They need a second Python environment (transformers 4.51.3 and the toolkit), named by `M2SA_TRANSFORMERS4_PYTHON`:
`.ci/run` builds it. Without it these tests skip, saying so."""

import base64
import io
import json
import os
import subprocess
import textwrap
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image
from transformers import pipeline

from conftest import BLOCK_PACKAGE_IMPORTS, free_port

LEGACY_PYTHON = os.environ.get("M2SA_TRANSFORMERS4_PYTHON")
TOOLKIT_TRANSFORMERS = "4.51.3"
pytestmark = pytest.mark.skipif(
    not LEGACY_PYTHON, reason="M2SA_TRANSFORMERS4_PYTHON is not set: it names a Python with transformers "
                              f"{TOOLKIT_TRANSFORMERS} and Inference Endpoints' toolkit, which .ci/run builds")
SERVER_START_SECONDS = 240
TEXTS = ["What a lovely day at the beach with my friends! @anna https://t.co/x1", "worst service ever, never again",
         "the train leaves at noon"]
PNG = io.BytesIO()
Image.new("RGB", (48, 32), (200, 30, 40)).save(PNG, format="PNG")
PNG = PNG.getvalue()
FP32 = {"backend": "fp32"}  # one arithmetic on both sides, whatever `auto` would pick on this CPU

LEGACY_PIPELINE = textwrap.dedent(
    """
    import io, json, sys
    import transformers
    from PIL import Image
    from transformers import pipeline
    model_dir, png_path, out_path = sys.argv[1:4]
    texts = json.loads(sys.argv[4])
    image = Image.open(png_path)
    pipe = pipeline(model=model_dir, trust_remote_code=True)
    answers = {
        "version": transformers.__version__,
        "text": pipe(texts[0], backend="fp32"),
        "text_and_image": pipe({"text": texts[1], "image": image}, backend="fp32"),
        "batch_top_k": pipe([texts[0], {"text": texts[1], "image": image}, {"text": "", "image": image}, texts[2]],
                            top_k=None, batch_size=2, backend="fp32"),
    }
    json.dump(answers, open(out_path, "w"))
    """
)


@pytest.fixture(scope="module")
def model_dir(main_job_workdir):
    return main_job_workdir / "outputs" / "m2sa-demo"


@pytest.fixture(scope="module")
def pipe(model_dir):
    return pipeline(model=str(model_dir), trust_remote_code=True)


@pytest.fixture(scope="module")
def legacy_environment(tmp_path_factory):
    """Environment variables of a process in the 4.51.3 environment: its own module cache, offline, no M2SA."""
    home = tmp_path_factory.mktemp("hf-home-transformers4")
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HF_HOME")}
    return {**environment, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def same_answers(answers, expected):
    """Same labels in the same order, scores within float noise, same image fields."""
    answers, expected = flat(answers), flat(expected)
    assert [answer["label"] for answer in answers] == [entry["label"] for entry in expected]
    assert [answer["score"] for answer in answers] == pytest.approx([entry["score"] for entry in expected], abs=1e-5)
    assert [answer["image_used"] for answer in answers] == [entry["image_used"] for entry in expected]


def flat(answers):
    return [entry for answer in answers for entry in (answer if isinstance(answer, list) else [answer])]


def test_the_pipeline_under_transformers_4_51_gives_the_answers_of_transformers_5(model_dir, pipe,
                                                                                  legacy_environment, tmp_path):
    png_path, out_path = tmp_path / "image.png", tmp_path / "answers.json"
    png_path.write_bytes(PNG)
    result = subprocess.run([LEGACY_PYTHON, "-c", BLOCK_PACKAGE_IMPORTS + LEGACY_PIPELINE, str(model_dir),
                             str(png_path), str(out_path), json.dumps(TEXTS)],
                            cwd=tmp_path, env=legacy_environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(out_path.read_text())
    assert answers["version"] == TOOLKIT_TRANSFORMERS
    image = Image.open(png_path)
    same_answers(answers["text"], pipe(TEXTS[0], **FP32))
    same_answers(answers["text_and_image"], pipe({"text": TEXTS[1], "image": image}, **FP32))
    expected = pipe([TEXTS[0], {"text": TEXTS[1], "image": image}, {"text": "", "image": image}, TEXTS[2]],
                    top_k=None, batch_size=2, **FP32)
    assert [len(ranked) for ranked in answers["batch_top_k"]] == [3, 3, 3, 3]
    same_answers(answers["batch_top_k"], expected)
    # the model's twitter normalisation ran there too: its handle and link read as `@user` and `http`
    same_answers(answers["text"], pipe(TEXTS[0].replace("@anna", "@user").replace("https://t.co/x1", "http"), **FP32))


@pytest.fixture(scope="module")
def endpoint(model_dir, legacy_environment, tmp_path_factory):
    """The toolkit's server for the model, started as its entrypoint.sh starts it: the model's requirements.txt
    installed, then `uvicorn webservice_starlette:app` with HF_MODEL_DIR set; yields its URL."""
    work = tmp_path_factory.mktemp("endpoint")
    requirements = str(model_dir / "requirements.txt")
    install = subprocess.run([LEGACY_PYTHON, "-m", "pip", "install", "--quiet", "-r", requirements, "--no-cache-dir"],
                             cwd=work, env=legacy_environment, capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    port = free_port()
    log = open(work / "server.log", "w")
    server = subprocess.Popen(
        [LEGACY_PYTHON, "-m", "uvicorn", "huggingface_inference_toolkit.webservice_starlette:app", "--host",
         "127.0.0.1", "--port", str(port)],
        cwd=work, env={**legacy_environment, "HF_MODEL_DIR": str(model_dir)}, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + SERVER_START_SECONDS
    try:
        while True:
            assert server.poll() is None, (work / "server.log").read_text()[-3000:]
            assert time.time() < deadline, f"no health answer in {SERVER_START_SECONDS} s"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    health = response.read().decode()
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        yield {"url": url, "health": health, "installed": installed_versions(legacy_environment)}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def installed_versions(environment):
    """{package: version} in the 4.51.3 environment, read after the model's requirements were installed."""
    result = subprocess.run([LEGACY_PYTHON, "-c", "import json, transformers, starlette; print(json.dumps("
                             "{'transformers': transformers.__version__, 'starlette': starlette.__version__}))"],
                            env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def post(endpoint, body, content_type="application/json", query=""):
    """(HTTP status, decoded JSON answer) of a POST to the endpoint."""
    data = json.dumps(body).encode() if content_type == "application/json" else body
    request = urllib.request.Request(f"{endpoint['url']}/{query}", data=data, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_endpoint_starts_on_the_toolkits_transformers_after_installing_the_models_requirements(endpoint):
    assert endpoint["health"] == "Ok"
    # requirements.txt replaced nothing the serving image ships
    assert endpoint["installed"]["transformers"] == TOOLKIT_TRANSFORMERS


def test_json_requests_get_the_pipelines_labels_and_scores(endpoint, pipe):
    image = Image.open(io.BytesIO(PNG))
    status, answer = post(endpoint, {"inputs": TEXTS[0], "parameters": FP32})
    assert status == 200
    same_answers(answer, pipe(TEXTS[0], **FP32))
    status, answer = post(endpoint, {"inputs": {"text": TEXTS[1], "image": base64.b64encode(PNG).decode()},
                                      "parameters": FP32})
    assert status == 200 and answer[0]["image_used"] is True
    same_answers(answer, pipe({"text": TEXTS[1], "image": image}, **FP32))
    status, answer = post(endpoint, {"inputs": TEXTS, "parameters": {**FP32, "top_k": None}})
    assert status == 200
    same_answers(answer, pipe(TEXTS, top_k=None, **FP32))


def test_an_image_body_is_classified_from_the_image_alone(endpoint, pipe):
    status, answer = post(endpoint, PNG, content_type="image/png", query="?backend=fp32")
    assert status == 200 and answer[0]["image_used"] is True
    # the toolkit decodes the body to an RGB PIL image, as here
    same_answers(answer, pipe({"text": "", "image": Image.open(io.BytesIO(PNG)).convert("RGB")}, **FP32))


def test_query_string_parameters_reach_the_pipeline(endpoint, pipe):
    status, answer = post(endpoint, {"inputs": TEXTS[1]}, query="?top_k=all&backend=fp32&function_to_apply=none")
    assert status == 200 and len(answer) == 3
    same_answers(answer, pipe(TEXTS[1], top_k=None, function_to_apply="none", **FP32))
    status, answer = post(endpoint, {"inputs": TEXTS[1]}, query="?top_k=2&backend=fp32")
    assert status == 200
    same_answers(answer, pipe(TEXTS[1], top_k=2, **FP32))


def test_the_default_backend_answers_and_a_bad_request_says_what_to_do(endpoint, pipe):
    status, answer = post(endpoint, {"inputs": TEXTS[0]})
    # the server's `auto` may pick another arithmetic than this process's (each times its kernels): its label is
    # fp32's unless fp32's two best labels are within a few hundredths of each other
    first, second = pipe(TEXTS[0], top_k=2, **FP32)
    assert status == 200 and answer[0]["label"] in (
        [first["label"]] if first["score"] - second["score"] > 0.05 else [first["label"], second["label"]])
    status, answer = post(endpoint, {"inputs": [TEXTS[0], 42]})
    assert status == 400 and "Input 1 is not a tweet" in answer["error"]

"""On a CUDA GPU (skipped without one, saying so): mixed-precision training learns, the pipeline on `device=0` gives
the CPU's labels, and `auto` there serves bf16 only where the model's agreement record allows it.

Not yet run on a GPU: no GPU was at hand when it was written. Run it whenever one is: `python -m pytest
tests/test_gpu.py`."""

import copy

import pytest
import torch
from transformers import pipeline

from modeling_m2sa.backends_m2sa import auto_backend

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: these tests need one")

TEXTS = ["I love this so much, best day ever!", "This is terrible, I hate waiting in line.",
         "The meeting is at 10 am tomorrow.", "Qué día tan bonito", "Das ist schrecklich"] * 4


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_on_the_gpu_learns_beyond_the_majority(precision, tmp_path):
    from dataset_script.demo import ensure_demo_dataset
    from m2sa_training.training.options import parse_options
    from m2sa_training.training.run import run_training

    dataset = ensure_demo_dataset(tmp_path / "demo", num_train=240, num_eval=60)
    options = parse_options(["--dataset", str(dataset), "--output-dir", str(tmp_path / "out"), "--num-epochs", "4",
                             "--batch-size", "16", "--modalities", "multimodal", "--max-length", "32",
                             "--mixed-precision", precision, "--cache-dir", str(tmp_path / "cache")])
    validation = run_training(options)["summary"]["validation"]
    majority = validation["majority"]["overall"]["macro_f1"]["mean"]
    assert validation["multimodal"]["overall"]["macro_f1"]["mean"] > majority + 0.2


def test_the_pipeline_on_the_gpu_gives_the_cpus_labels(main_job_workdir):
    model_dir = str(main_job_workdir / "outputs" / "m2sa-demo")
    on_cpu = pipeline(model=model_dir, trust_remote_code=True, device="cpu", backend="fp32")
    on_gpu = pipeline(model=model_dir, trust_remote_code=True, device=0, backend="fp32")
    assert [answer["label"] for answer in on_gpu(TEXTS)] == [answer["label"] for answer in on_cpu(TEXTS)]
    scores = zip(on_gpu(TEXTS), on_cpu(TEXTS))
    assert all(gpu["score"] == pytest.approx(cpu["score"], abs=1e-3) for gpu, cpu in scores)


def test_auto_on_the_gpu_follows_the_record(main_job_workdir):
    model_dir = str(main_job_workdir / "outputs" / "m2sa-demo")
    pipe = pipeline(model=model_dir, trust_remote_code=True, device=0)
    model = copy.deepcopy(pipe.model)
    model.config.backend_agreement = {"split": "validation", "tweets": 500,
                                      "agreement": {"bf16": 0.998, "int8": 0.99, "int8_7bit": 0.99}}
    assert auto_backend(model.device, model)[0] == "bf16"
    model.config.backend_agreement["agreement"]["bf16"] = 0.98
    assert auto_backend(model.device, model)[0] == "fp32"
    # the demo model's own record, which train.py wrote, decides its default on the GPU
    bf16_share = pipe.model.config.backend_agreement["agreement"]["bf16"]
    assert pipe.served_backend()[0] == ("bf16" if bf16_share >= 0.99 else "fp32")

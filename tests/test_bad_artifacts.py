"""Damaged downloads and copies fail with an error that names the file and says what to do."""

import os
import re
import shutil

import pytest
from transformers import pipeline

from conftest import run_without_package
from m2sa_training.training.options import parse_options
from m2sa_training.training.run import prepare
from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

REEXPORT = r"Re-export it with train\.py \(or save_pretrained\), or download it again\."


def truncate(path):
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) // 2)


def overwrite_middle(path):
    with open(path, "r+b") as file:
        file.seek(os.path.getsize(path) // 3)
        file.write(b"\xff" * 2000)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    from dataset_script.demo import build_demo_dataset

    return build_demo_dataset(tmp_path_factory.mktemp("bad-artifacts") / "demo", num_train=60, num_eval=12)


@pytest.mark.parametrize("damage", [truncate, overwrite_middle], ids=["truncated", "corrupt"])
def test_a_damaged_parquet_shard_names_the_file_and_how_to_rebuild_it(small_demo, tmp_path, damage):
    # A name per case: `datasets` caches local datasets by directory name and file dates.
    dataset = tmp_path / f"m2sa-demo-{damage.__name__}"
    shutil.copytree(small_demo, dataset)
    shard = dataset / "data" / "en" / "train-00000-of-00001.parquet"
    damage(shard)
    options = parse_options(["--dataset", str(dataset), "--output-dir", str(tmp_path / "out")])
    with pytest.raises(ValueError) as raised:
        prepare(options)
    message = str(raised.value)
    assert f"The data file {str(shard)!r}" in message and "is damaged (a truncated or corrupt Parquet shard" in message
    assert f"Rebuild the dataset with `python dataset_script/build.py --out {dataset}`" in message
    assert "or download it again" in message


@pytest.fixture
def model_copy(saved_tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(saved_tiny_model_dir, copy)
    return copy


def test_truncated_weights_name_the_file_in_every_way_of_loading(model_copy, tmp_path):
    truncate(model_copy / "model.safetensors")
    expected = (rf"model folder {re.escape(str(model_copy))} is damaged: truncated or corrupt weights in "
                rf"model\.safetensors \(\d+ bytes where its header describes \d+\)\. {REEXPORT}")
    with pytest.raises(OSError, match=expected):
        M2SAForSequenceClassification.from_pretrained(model_copy)
    with pytest.raises(ValueError, match=expected):  # the pipeline reports what its model class raised
        pipeline(model=str(model_copy), trust_remote_code=True)
    # Where this package is not installed, the model's own saved code says the same.
    result = run_without_package(
        "from transformers import AutoModelForSequenceClassification\n"
        "AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=True)\n",
        model_copy, cwd=tmp_path)
    assert result.returncode != 0
    assert "model.safetensors (" in result.stderr and "Re-export it with train.py" in result.stderr


@pytest.mark.parametrize("code_file", ["modeling_m2sa.py", "configuration_m2sa.py", "pipeline_m2sa.py",
                                       "processing_m2sa.py"])
def test_a_missing_remote_code_file_is_named(model_copy, code_file):
    (model_copy / code_file).unlink()
    expected = (rf"{re.escape(str(model_copy))} lacks {re.escape(code_file)}: code that `trust_remote_code=True` and "
                rf"`pipeline\(model=\.\.\.\)` load from a saved M2SA model, so the folder is incomplete\. {REEXPORT}")
    with pytest.raises(OSError, match=expected):
        M2SAForSequenceClassification.from_pretrained(model_copy)
    if code_file == "processing_m2sa.py":
        with pytest.raises(OSError, match=expected):
            M2SAProcessor.from_pretrained(model_copy)
    else:
        M2SAProcessor.from_pretrained(model_copy)  # the processor's own code is all there
    # transformers resolves the remote code before any of this package runs; its error names the file too.
    with pytest.raises((OSError, ValueError), match=re.escape(code_file)):
        pipeline(model=str(model_copy), trust_remote_code=True)


@pytest.mark.parametrize("tokenizer_file, expected", [
    ("tokenizer.json", r"has no tokenizer vocabulary: its XLMRobertaTokenizer needs one of sentencepiece\.bpe\.model, "
                       r"tokenizer\.json, and none is there\."),
    ("tokenizer_config.json", r"has no tokenizer: tokenizer_config\.json is missing\."),
])
def test_a_processor_without_its_tokenizer_names_the_missing_files(model_copy, tokenizer_file, expected):
    # Without the check, transformers builds a tokenizer with an empty vocabulary (every token <unk>) or a bare one.
    (model_copy / tokenizer_file).unlink()
    with pytest.raises(OSError, match=rf"{re.escape(str(model_copy))} {expected} {REEXPORT}"):
        M2SAProcessor.from_pretrained(model_copy)

"""train.py end to end on the embedded demo set: export, resume after a kill, cached features, bad input."""

import json
import os
import subprocess
import sys

import datasets
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from conftest import (
    REPO_ROOT,
    kill_training_after_its_first_checkpoint,
    logits_in_a_fresh_process,
    macro_f1_by_cue,
)
from m2sa_training.training.options import parse_options
from m2sa_training.training.run import prepare, run_training

QUICK = ["--num-epochs", "2", "--batch-size", "16", "--modalities", "multimodal", "--max-length", "32"]


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory):
    from dataset_script.demo import ensure_demo_dataset

    return str(ensure_demo_dataset(tmp_path_factory.mktemp("demo") / "m2sa-demo", num_train=240, num_eval=60))


def options_for(demo_dataset, tmp_path, *extra, output="out"):
    return parse_options(["--dataset", demo_dataset, "--output-dir", str(tmp_path / output),
                          "--cache-dir", str(tmp_path / "cache"), *QUICK, *extra])


@pytest.fixture(scope="session")
def trained(demo_dataset, tmp_path_factory):
    """One quick multimodal run on the demo set: (options, outcome)."""
    tmp_path = tmp_path_factory.mktemp("trained")
    options = options_for(demo_dataset, tmp_path)
    return options, run_training(options)


def test_output_dir_holds_model_processor_card_and_reports(trained):
    _, outcome = trained
    output_dir = outcome["output_dir"]
    for name in ("config.json", "model.safetensors", "modeling_m2sa.py", "pipeline_m2sa.py", "processor_config.json",
                 "README.md",
                 "evaluation.json", "evaluation.md", "per_language_f1_test.png", "confusion_matrix_test.png",
                 "comparison.md", "run_config.json"):
        assert (output_dir / name).is_file(), name
    evaluation = json.loads((output_dir / "evaluation.json").read_text())
    assert set(evaluation["test"]["per_language"]) == {"ar", "de", "en", "es", "fr", "it", "pt", "zh"}
    assert "model-index" in (output_dir / "README.md").read_text()
    assert list(json.loads((output_dir / "config.json").read_text())["custom_pipelines"]) == ["m2sa-sentiment"]
    assert "m2sa-synthetic-demo" in ModelCard.load(output_dir / "README.md").data.tags  # trained on the demo set
    assert "majority" in outcome["comparison"]


def test_the_exported_model_carries_its_agreement_record_on_validation(trained, demo_dataset):
    _, outcome = trained
    output_dir = outcome["output_dir"]
    record = json.loads((output_dir / "config.json").read_text())["backend_agreement"]
    validation = datasets.load_dataset(demo_dataset, "all", split="validation")
    assert record["split"] == "validation" and record["tweets"] == len(validation)
    assert set(record["agreement"]) == {"bf16", "int8", "int8_7bit"}
    assert all(0 <= share <= 1 for share in record["agreement"].values())
    card = " ".join((output_dir / "README.md").read_text().split())
    assert f"This model's record: on {len(validation)} validation tweets, the share that kept the fp32 model's " \
           f"label: bf16 {record['agreement']['bf16']:.1%}" in card


def test_the_exported_model_is_calibrated_on_validation_and_reports_it(trained, demo_dataset):
    from m2sa_training.evaluation.calibration import negative_log_likelihood
    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

    _, outcome = trained
    output_dir = outcome["output_dir"]
    calibration = json.loads((output_dir / "calibration.json").read_text())
    temperature = json.loads((output_dir / "config.json").read_text())["calibration_temperature"]
    assert calibration["test"]["temperature"] == calibration["validation"]["temperature"] == temperature > 0
    assert calibration["validation"]["after"]["nll"] <= calibration["validation"]["before"]["nll"]
    # Fitted on validation: the exported model's validation logits (the very ones the report scored) have their
    # lowest NLL at the fitted temperature: 1 % either side is worse.
    validation = datasets.load_dataset(demo_dataset, "all", split="validation")
    model = M2SAForSequenceClassification.from_pretrained(output_dir).eval()
    processor = M2SAProcessor.from_pretrained(output_dir)
    with torch.no_grad():
        logits = model(**processor(text=validation["text"], images=validation["image"])).logits
    labels = torch.tensor(validation["label"])
    fitted = negative_log_likelihood(logits, labels, temperature)
    assert fitted == pytest.approx(calibration["validation"]["after"]["nll"], rel=1e-4)
    for other in (temperature * 0.99, temperature * 1.01):
        assert negative_log_likelihood(logits, labels, other) > fitted
    evaluation = json.loads((output_dir / "evaluation.json").read_text())
    assert calibration["test"]["tweets"] == evaluation["test"]["overall"]["support"]
    assert set(calibration["test"]["shares"]) == {"negative", "neutral", "positive"}
    card = (output_dir / "README.md").read_text()
    assert f"T = {temperature:.3f}" in card
    assert f"| softmax of the logits | {100 * calibration['test']['before']['ece']:.1f} |" in card
    assert "## Calibration of the exported model" in (output_dir / "evaluation.md").read_text()
    assert (output_dir / "reliability_diagram_test.png").stat().st_size > 1000


def test_no_calibrate_leaves_the_softmax_as_trained(demo_dataset, tmp_path):
    outcome = run_training(options_for(demo_dataset, tmp_path, "--no-calibrate", "--num-epochs", "1"))
    output_dir = outcome["output_dir"]
    assert json.loads((output_dir / "config.json").read_text())["calibration_temperature"] is None
    assert not (output_dir / "calibration.json").exists()
    assert "### Calibration" not in (output_dir / "README.md").read_text()


def test_exported_model_predicts_the_same_in_a_fresh_process(trained, demo_dataset, tmp_path):
    import datasets
    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

    output_dir = trained[1]["output_dir"]
    rows = datasets.load_dataset(demo_dataset, "all", split="test").select(range(12))
    inputs = {"texts": list(rows["text"]), "images": []}
    for index, row in enumerate(rows):
        path = ""
        if row["image"] is not None:
            path = str(tmp_path / f"{index}.jpg")
            row["image"].save(path)
        inputs["images"].append(path)
    logits = logits_in_a_fresh_process(output_dir, inputs["texts"], inputs["images"], tmp_path)
    from PIL import Image

    model = M2SAForSequenceClassification.from_pretrained(output_dir).eval()
    processor = M2SAProcessor.from_pretrained(output_dir)
    images = [Image.open(path) if path else None for path in inputs["images"]]
    with torch.no_grad():
        expected = model(**processor(text=inputs["texts"], images=images)).logits
    assert torch.equal(expected, logits)


def test_resume_after_a_kill_gives_the_same_result(demo_dataset, tmp_path):
    flags = ["--dataset", demo_dataset, "--cache-dir", str(tmp_path / "cache"), "--num-epochs", "4",
             "--batch-size", "16", "--modalities", "multimodal", "--max-length", "32", "--early-stopping-patience", "9"]
    uninterrupted = run_training(parse_options([*flags, "--output-dir", str(tmp_path / "straight")]))

    killed_dir = tmp_path / "killed"
    run_dir = kill_training_after_its_first_checkpoint(flags, killed_dir)
    assert not (run_dir / "checkpoints" / "epoch-4").exists(), "the run was not interrupted"

    resumed = run_training(parse_options([*flags, "--output-dir", str(killed_dir), "--resume-from-checkpoint", "latest"]))
    assert resumed["summary"] == uninterrupted["summary"]
    straight_weights = load_file(tmp_path / "straight" / "model.safetensors")
    resumed_weights = load_file(killed_dir / "model.safetensors")
    assert all(torch.equal(straight_weights[name], resumed_weights[name]) for name in straight_weights)


def test_cached_features_train_like_recomputed_features(demo_dataset, tmp_path):
    frozen = ["--freeze-vision-model", "--num-epochs", "2"]
    cached = run_training(options_for(demo_dataset, tmp_path, *frozen, output="cached"))
    cache_files = list((tmp_path / "cache" / "features").glob("*.pt"))
    assert len(cache_files) == 3  # train, validation, test
    recomputed = run_training(options_for(demo_dataset, tmp_path, *frozen, "--no-cache-features", output="recomputed"))
    assert cached["summary"] == recomputed["summary"]
    cached_weights = load_file(tmp_path / "cached" / "model.safetensors")
    recomputed_weights = load_file(tmp_path / "recomputed" / "model.safetensors")
    for name, value in cached_weights.items():
        assert torch.allclose(value, recomputed_weights[name], atol=1e-6), name
    # A second cached run reads the same files instead of computing new ones.
    mtimes = {path: path.stat().st_mtime_ns for path in cache_files}
    run_training(options_for(demo_dataset, tmp_path, *frozen, output="cached-again"))
    assert {path: path.stat().st_mtime_ns for path in cache_files} == mtimes


def text_only_dataset(tmp_path):
    from dataset_script.builder import build_dataset
    from dataset_script.schema import Source, SourceInfo, TweetRecord

    records = [TweetRecord(tweet_id=str(1000 + i), text=f"tweet number {i}", label=("negative", "neutral", "positive")[i % 3],
                           config="en", language="en", source="test") for i in range(60)]
    info = SourceInfo(name="test", description="text-only test tweets", license="none", citation="")
    build_dataset(tmp_path / "text-only", [Source(info, records)], show_progress=False)
    return str(tmp_path / "text-only")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--languages", "xx"], "Unknown language code 'xx'"),
        (["--languages", "bg"], "The dataset has no config 'bg'"),
        (["--text-model", "/no/such/tower"], "text tower '/no/such/tower' could not be loaded"),
        (["--vision-model", "nobody/no-such-model"], "vision tower 'nobody/no-such-model' could not be loaded"),
        (["--max-train-samples", "0"], "train split of all is empty"),
        (["--vision-model", "none", "--modalities", "image"], "--vision-model none trains a text-only model"),
    ],
)
def test_bad_input_fails_before_training(demo_dataset, tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        prepare(options_for(demo_dataset, tmp_path, *flags))
    assert not (tmp_path / "out").exists()


def test_text_only_dataset_with_an_image_tower_is_refused(tmp_path):
    dataset = text_only_dataset(tmp_path)
    with pytest.raises(ValueError, match="has no images, but an image tower was chosen"):
        prepare(options_for(dataset, tmp_path, "--languages", "en"))
    options = parse_options(["--dataset", dataset, "--languages", "en", "--vision-model", "none",
                             "--output-dir", str(tmp_path / "text-only-run")])
    assert options.modalities == ["text"]
    prepare(options)


def test_output_dir_with_a_different_run_is_refused(trained, demo_dataset):
    options, outcome = trained
    changed = parse_options(["--dataset", demo_dataset, "--output-dir", str(outcome["output_dir"]),
                             "--cache-dir", options.cache_dir, *QUICK, "--learning-rate", "0.5"])
    with pytest.raises(ValueError, match="already holds a different run.*learning_rate"):
        prepare(changed)


def test_corrupt_checkpoint_is_refused_before_training(trained, tmp_path):
    options, outcome = trained
    checkpoint = tmp_path / "epoch-1"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text("{not json")
    options.resume_from_checkpoint = str(checkpoint)
    with pytest.raises(ValueError, match="incomplete or corrupt"):
        run_training(options)


def test_paper_config_file_sets_the_paper_recipe(tmp_path):
    options = parse_options(["--config", str(REPO_ROOT / "configs" / "paper_xlmr_sm_clip.yaml"), "--seeds", "1", "2"])
    assert options.text_model == "cardiffnlp/twitter-xlm-roberta-base-sentiment-multilingual"
    assert options.vision_model == "openai/clip-vit-base-patch32"
    assert (options.learning_rate, options.batch_size, options.weight_decay) == (5e-5, 8, 0.1)
    assert options.seeds == [1, 2]
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.1\n")
    with pytest.raises(ValueError, match="Unknown options in .*learning_rat"):
        parse_options(["--config", str(bad)])


def test_push_to_hub_uploads_the_output_dir_with_a_card_that_names_the_hub_id(demo_dataset, tmp_path, monkeypatch):
    """train.py --push-to-hub, with the Hub's API recording its calls (the Hub cannot be reached here)."""
    import huggingface_hub

    calls = []

    class RecordingApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs["repo_id"], kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    outcome = run_training(options_for(demo_dataset, tmp_path, "--num-epochs", "1", "--push-to-hub", "me/m2sa-test"))
    assert [call[:2] for call in calls] == [("create_repo", "me/m2sa-test"), ("upload_folder", "me/m2sa-test")]
    upload = calls[1][2]
    output_dir = outcome["output_dir"]
    assert upload["folder_path"] == str(output_dir)
    assert {"runs/*", "towers/*"} <= set(upload["ignore_patterns"])
    # what the endpoint needs is uploaded: its handler and the requirements it installs at start
    assert (output_dir / "handler.py").is_file() and (output_dir / "requirements.txt").is_file()
    card = (output_dir / "README.md").read_text()
    assert 'pipeline(model="me/m2sa-test", trust_remote_code=True)' in card  # the Hub id, not the folder's name
    assert f'"{output_dir.name}"' not in card
    assert ModelCard(card).data.model_name == "me/m2sa-test"
    validation = datasets.load_dataset(demo_dataset, "all", split="validation")
    record = json.loads((output_dir / "config.json").read_text())["backend_agreement"]  # pushed with the model
    assert (record["split"], record["tweets"]) == ("validation", len(validation))


RECORDING_TRAINING_LOSSES = (
    "import json, os, runpy, sys\n"
    "script = sys.argv[1]\n"
    "sys.argv, sys.path[0] = sys.argv[1:], os.path.dirname(script)\n"
    "from modeling_m2sa import M2SAForSequenceClassification\n"
    "forward, losses = M2SAForSequenceClassification.forward, []\n"
    "def recording_forward(self, *args, **kwargs):\n"
    "    output = forward(self, *args, **kwargs)\n"
    "    if self.training:\n"
    "        losses.append(output.loss.item())\n"
    "    return output\n"
    "M2SAForSequenceClassification.forward = recording_forward\n"
    "runpy.run_path(script, run_name='__main__')\n"
    "with open(os.path.join(os.environ['LOSSES_DIR'], os.environ['RANK'] + '.json'), 'w') as file:\n"
    "    json.dump(losses, file)\n"
)
"""Runs `script args` (torchrun's command) recording the training loss of every batch of its process."""


def test_two_process_cpu_run_with_torchrun(demo_dataset, tmp_path):
    """Real 2-process DDP on CPU: the main process builds towers and writes outputs, both train, and the reported
    training loss is the mean of the two processes' losses."""
    output_dir = tmp_path / "ddp"
    wrapper = tmp_path / "recording_losses.py"
    wrapper.write_text(RECORDING_TRAINING_LOSSES)
    environment = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "LOSSES_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(wrapper),
         str(REPO_ROOT / "train.py"),
         "--dataset", demo_dataset, "--output-dir", str(output_dir), "--cache-dir", str(tmp_path / "cache"),
         "--num-epochs", "1", "--batch-size", "16", "--max-train-samples", "96", "--modalities", "multimodal"],
        env=environment, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "overall" in result.stdout and result.stdout.count("Model, processor, model card") == 1
    history = json.loads((output_dir / "runs" / "multimodal-seed42" / "results.json").read_text())["history"]
    assert len(history) == 1
    losses = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert [len(process_losses) for process_losses in losses] == [3, 3]  # 96 rows in batches of 16, shared by two
    process_means = [sum(process_losses) / len(process_losses) for process_losses in losses]
    assert process_means[0] != process_means[1]
    assert history[0]["train_loss"] == pytest.approx(sum(process_means) / 2, rel=1e-6)
    from modeling_m2sa import M2SAForSequenceClassification

    assert M2SAForSequenceClassification.from_pretrained(output_dir).config.vision_config is not None


def gradient_norms_at_each_optimizer_step(options, monkeypatch):
    """Train with `options`: (total gradient norm seen by each optimizer step, total norm before each clipping)."""
    from accelerate import Accelerator
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    at_step, before_clipping = [], []

    def record_gradient_norm(optimizer, args, kwargs):
        gradients = [parameter.grad for group in optimizer.param_groups for parameter in group["params"]
                     if parameter.grad is not None]
        at_step.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gradients])).item())

    clip = Accelerator.clip_grad_norm_

    def recording_clip(self, *args, **kwargs):
        total_norm = clip(self, *args, **kwargs)
        before_clipping.append(total_norm.item())
        return total_norm

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", recording_clip)
    hook = register_optimizer_step_pre_hook(record_gradient_norm)
    try:
        run_training(options)
    finally:
        hook.remove()
    return at_step, before_clipping


def test_gradients_are_clipped_to_max_grad_norm_at_each_optimizer_step(demo_dataset, tmp_path, monkeypatch):
    quick = ["--num-epochs", "1", "--max-train-samples", "64", "--gradient-accumulation-steps", "2"]
    options = options_for(demo_dataset, tmp_path, *quick, "--max-grad-norm", "0.05", output="clipped")
    at_step, before_clipping = gradient_norms_at_each_optimizer_step(options, monkeypatch)
    assert len(at_step) == len(before_clipping) == 2  # 4 batches, an optimizer step (and clipping) every second one
    assert max(before_clipping) > 0.05  # the limit bites
    assert max(at_step) <= 0.05 * (1 + 1e-5)

    options = options_for(demo_dataset, tmp_path, *quick, "--max-grad-norm", "0", output="unclipped")
    at_step, before_clipping = gradient_norms_at_each_optimizer_step(options, monkeypatch)
    assert before_clipping == [] and len(at_step) == 2 and max(at_step) > 0.05
    assert parse_options([]).max_grad_norm == 1.0  # the Trainer's default


def test_unreadable_training_image_travels_with_its_batch_and_is_used_as_no_image(tiny_model_and_processor):
    from m2sa_training.training.data import TweetCollator

    _, processor = tiny_model_and_processor
    collator = TweetCollator(processor, use_images=True)
    rows = [{"row_index": 7, "text": "fine", "label": 2, "image": {"bytes": b"not an image", "path": None}},
            {"row_index": 8, "text": "also fine", "label": 0, "image": None}]
    batch = collator(rows)
    assert batch["has_image"].tolist() == [False, False]
    assert list(batch["image_errors"]) == [7] and "could not be decoded" in batch["image_errors"][7]
    assert batch["labels"].tolist() == [2, 0]
    assert vars(collator).keys() == {"processor", "use_images", "cached"}  # nothing recorded on the collator


def corrupt_first_image(shard):
    """Replace the image bytes of the shard's first row that has an image; return that row's tweet id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(shard)
    rows = table.to_pylist()
    row = next(row for row in rows if row["image"] is not None)
    row["image"] = {"bytes": b"this is not an image", "path": None}
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    return row["tweet_id"]


@pytest.fixture(scope="session")
def dataset_with_unreadable_images(demo_dataset, tmp_path_factory):
    """The demo set with one unreadable image in each of train, validation and test: (path, {split: tweet id})."""
    import shutil

    # Another name than the original's: `datasets` caches local Parquet datasets by directory name and file mtimes
    # (which copytree keeps), so a same-named copy could be served from the original's cache.
    copy = tmp_path_factory.mktemp("unreadable") / "m2sa-demo-unreadable"
    shutil.copytree(demo_dataset, copy)
    corrupted = {split: corrupt_first_image(copy / "data" / "en" / f"{split}-00000-of-00001.parquet")
                 for split in ("train", "validation", "test")}
    return str(copy), corrupted


@pytest.mark.parametrize("flags", [[], ["--freeze-vision-model"], ["--dataloader-num-workers", "2"]],
                         ids=["recomputed", "feature-cache", "two-workers"])
def test_unreadable_images_of_every_split_are_reported(dataset_with_unreadable_images, tmp_path, flags):
    dataset, corrupted = dataset_with_unreadable_images
    options = parse_options(["--dataset", dataset, "--output-dir", str(tmp_path / "out"),
                             "--cache-dir", str(tmp_path / "cache"), *QUICK, "--num-epochs", "1", *flags])
    outcome = run_training(options)
    report = json.loads((tmp_path / "out" / "invalid_images.json").read_text())
    assert report == outcome["invalid_images"]
    assert {record["split"]: record["tweet_id"] for record in report} == corrupted
    assert len(report) == 3  # each image once, however many epochs and evaluations read it
    assert all("could not be decoded" in record["reason"] for record in report)


def test_training_learns_beyond_the_majority_baseline(trained, demo_dataset):
    _, outcome = trained
    validation = outcome["summary"]["validation"]
    multimodal = validation["multimodal"]["overall"]["macro_f1"]["mean"]
    majority = validation["majority"]["overall"]["macro_f1"]["mean"]
    assert majority < 0.25  # one class of three predicted: macro-F1 at most 1/3 * F1 of that class
    assert multimodal > majority + 0.2
    # The multimodal model reads the images: withholding them costs it validation macro-F1 (a model that ignores
    # images loses nothing). Its two epochs learn the image cue first (seeds 42, 0, 1, 2, 3: 0.49, 0.46, 0.47, 0.46,
    # 0.47 with images, 0.15 to 0.19 without, margins 0.27 to 0.33; blanking the texts costs them nothing yet). Longer
    # runs learn both cues: test_any_dataset.py checks the text cue too.
    rows = datasets.load_dataset(demo_dataset, "all", split="validation")
    scores = macro_f1_by_cue(outcome["output_dir"], rows)
    assert scores["both"] == pytest.approx(multimodal, abs=0.02)  # the run's own evaluation of the exported model
    assert scores["both"] > scores["without_images"] + 0.2


def test_dataset_labels_must_match_the_model(tiny_model_and_processor):
    import datasets
    from m2sa_training.training.data import check_label_names

    model, _ = tiny_model_and_processor
    reordered = datasets.Dataset.from_dict(
        {"label": [0]}, features=datasets.Features({"label": datasets.ClassLabel(names=["positive", "negative",
                                                                                          "neutral"])}))
    with pytest.raises(ValueError, match=r"labels \['positive', 'negative', 'neutral'\] do not match the model's "
                                         r"labels \['negative', 'neutral', 'positive'\]"):
        check_label_names(reordered, model.config)
    matching = reordered.cast_column("label", datasets.ClassLabel(names=["negative", "neutral", "positive"]))
    assert check_label_names(matching, model.config) == ["negative", "neutral", "positive"]


def test_option_precedence_is_defaults_preset_yaml_flags(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("preset: paper_xlmr_sm_clip\nbatch_size: 4\nfreeze_vision_model: true\nnum_epochs: 2\n")
    from_yaml = parse_options(["--config", str(config)])
    assert (from_yaml.learning_rate, from_yaml.batch_size, from_yaml.freeze_vision_model) == (5e-5, 4, True)
    assert from_yaml.num_epochs == 2 and from_yaml.max_length == 128  # YAML over preset, preset over defaults
    flags = parse_options(["--config", str(config), "--batch-size", "2", "--no-freeze-vision-model",
                           "--mixed_precision", "bf16"])
    assert (flags.batch_size, flags.freeze_vision_model, flags.mixed_precision) == (2, False, "bf16")
    with pytest.raises(SystemExit):  # argparse names the allowed choices on stderr
        parse_options(["--mixed-precision", "fp8"])
    config.write_text("mixed_precision: fp8\n")
    with pytest.raises(ValueError, match=r"--mixed-precision must be one of \('no', 'bf16', 'fp16'\), got 'fp8'"):
        parse_options(["--config", str(config)])

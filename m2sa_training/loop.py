"""One training run: Accelerate loop, validation each epoch, checkpoints, early stopping, best-checkpoint selection."""

import json
import logging
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import DistributedDataParallelKwargs, gather_object, set_seed
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from dataset_script.atomic_files import atomic_directory, partial_path, replace_directory
from modeling_m2sa import M2SAForSequenceClassification

from .data import IndexedRows, TweetCollator, model_inputs_and_image_errors
from .evaluation import compute_metrics
from .feature_cache import cached_features
from .lora import save_exported_model
from .modality_dropout import drop_images, image_dropout_for

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
CHECKPOINT_PREFIX = "epoch-"
EVAL_SPLITS = ("validation", "test")


@dataclass(frozen=True)
class RunSpec:
    """What makes one run of a job: which model (modality), which seed, where it writes, where it resumes from."""

    modality: str  # "multimodal", "text" or "image"
    seed: int
    run_dir: Path
    resume_from: Path | None = None

    @property
    def name(self):
        return self.run_dir.name


@dataclass
class PreparedRun:
    """Everything `train_run` builds before the first epoch (prepared by Accelerate)."""

    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_loader: torch.utils.data.DataLoader
    eval_loaders: dict
    feature_cache_seconds: float
    image_errors: dict = field(default_factory=dict)  # {split: {row position: reason}}
    image_dropout: float = 0.0  # probability that a training tweet is shown without its image in an epoch


def frozen_towers(model, modality):
    """The towers whose features can be cached for this run."""
    config = model.config
    towers = set()
    if config.freeze_text_model:
        towers.add("text")
    if config.vision_config is not None and config.freeze_vision_model and modality != "text":
        towers.add("vision")
    if towers and config.fusion_type == "cross_attention":
        logger.info("Features of the frozen %s tower(s) are recomputed every step: cross_attention fusion reads "
                    "their token and patch states, which the cache (pooled features) does not hold.",
                    " and ".join(sorted(towers)))
        return set()
    return towers


def latest_checkpoint(run_dir):
    """The newest complete checkpoint of a run (None when it has none); incomplete ones are skipped with a warning."""
    numbered = []
    for path in (Path(run_dir) / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*"):
        number = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
        if number is not None and path.is_dir():
            numbered.append((int(number[1]), path))
    for _, checkpoint in sorted(numbered, reverse=True):
        try:
            read_checkpoint_state(checkpoint)
            return checkpoint
        except ValueError as error:
            logger.warning("Skipping checkpoint %s, which is incomplete or corrupt (%s): resuming from the newest "
                           "complete one.", checkpoint, error.__cause__)
    return None


def read_checkpoint_state(checkpoint):
    """The trainer state of a checkpoint, or a clear error when it is incomplete or corrupt."""
    checkpoint = Path(checkpoint)
    state_path = checkpoint / TRAINER_STATE
    try:
        state = json.loads(state_path.read_text())
        required = {"epoch", "best_metric", "best_epoch", "epochs_without_improvement", "history"}
        if not required <= set(state):
            raise ValueError(f"missing {sorted(required - set(state))}")
        if not any(checkpoint.glob("model*.safetensors")) and not any(checkpoint.glob("pytorch_model*.bin")):
            raise ValueError("no model weights")
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Checkpoint {str(checkpoint)!r} is incomplete or corrupt ({error}). Resume from an earlier checkpoint in "
            f"the same folder, or start without --resume-from-checkpoint."
        ) from error
    return state


def setup_run(options, spec, model, processor, splits):
    """Feature cache, data loaders, optimizer and scheduler, all prepared by a new `Accelerator`."""
    find_unused = model.config.vision_config is not None and not model.config.freeze_vision_model
    accelerator = Accelerator(
        mixed_precision=options.mixed_precision,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        log_with=options.report_to,
        project_dir=str(spec.run_dir),
        # Shuffling depends only on (seed, epoch) via `set_epoch`: a resumed run sees the same batches.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=spec.seed),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused)],
    )
    use_images = model.config.vision_config is not None
    towers = frozen_towers(model, spec.modality) if options.cache_features else set()
    cached, image_errors = {}, {}
    feature_seconds = time.perf_counter()
    if towers:
        for split_name, split in splits.items():
            with accelerator.main_process_first():
                cached[split_name], image_errors[split_name] = cached_features(
                    model.m2sa, processor, split, use_images, towers, options.cache_dir)
    feature_seconds = time.perf_counter() - feature_seconds

    def loader(split_name, shuffle):
        return torch.utils.data.DataLoader(
            IndexedRows(splits[split_name]), batch_size=options.batch_size, shuffle=shuffle,
            generator=torch.Generator().manual_seed(spec.seed) if shuffle else None,
            collate_fn=TweetCollator(processor, use_images, cached.get(split_name)),
            num_workers=options.dataloader_num_workers,
        )

    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options.learning_rate, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(splits["train"]) / options.batch_size / options.gradient_accumulation_steps)
    total_steps = steps_per_epoch * options.num_epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(options.warmup_ratio * total_steps), total_steps)
    model, optimizer, scheduler, train_loader, *eval_loaders = accelerator.prepare(
        model, optimizer, scheduler, loader("train", True), *(loader(name, False) for name in EVAL_SPLITS))
    if options.report_to:
        accelerator.init_trackers(spec.name, config=json.loads(options.to_json()))
    return PreparedRun(accelerator, model, optimizer, scheduler, train_loader, dict(zip(EVAL_SPLITS, eval_loaders)),
                       feature_seconds, image_errors, image_dropout_for(options, spec.modality))


def train_epoch(run, epoch, spec, num_epochs):
    """One pass over the training data: (mean loss, {row position: reason} of unusable images)."""
    accelerator, model = run.accelerator, run.model
    set_seed(spec.seed + epoch)  # dropout depends only on (seed, epoch): resuming repeats it exactly
    run.train_loader.set_epoch(epoch)
    model.train()
    progress = tqdm(run.train_loader, desc=f"{spec.name} epoch {epoch + 1}/{num_epochs}",
                    disable=not accelerator.is_local_main_process, leave=False)
    total_loss, image_errors = 0.0, {}
    for batch in progress:
        inputs, batch_image_errors = model_inputs_and_image_errors(batch)
        image_errors.update(batch_image_errors)
        if run.image_dropout:
            inputs["has_image"] = drop_images(inputs["has_image"], batch["row_index"].tolist(), spec.seed, epoch,
                                              run.image_dropout)
        with accelerator.accumulate(model):
            loss = model(**inputs).loss
            accelerator.backward(loss)
            run.optimizer.step()
            run.scheduler.step()
            run.optimizer.zero_grad()
        total_loss += loss.item()
        progress.set_postfix(loss=f"{loss.item():.3f}")
    return total_loss / max(len(run.train_loader), 1), image_errors


def evaluate_split(accelerator, model, loader, split, label_names):
    """(metrics of the model on `split`, {row position: reason} of unusable images)."""
    model.eval()
    predictions, image_errors = [], {}
    with torch.inference_mode():
        for batch in loader:
            inputs, batch_image_errors = model_inputs_and_image_errors(batch)
            image_errors.update(batch_image_errors)
            inputs.pop("labels")
            predictions.append(accelerator.gather_for_metrics(model(**inputs).logits.argmax(dim=-1)))
    predictions = torch.cat(predictions).tolist()
    return compute_metrics(list(split["label"]), predictions, list(split["language"]), label_names), image_errors


def record_image_errors(records, split_name, image_errors):
    records.setdefault(split_name, {}).update(image_errors)


def end_epoch(options, run, spec, state, epoch, macro_f1):
    """Best-model selection, early-stopping count and the epoch's checkpoint."""
    if macro_f1 > state["best_metric"]:
        state.update(best_metric=macro_f1, best_epoch=epoch + 1, epochs_without_improvement=0)
        if run.accelerator.is_main_process:
            with atomic_directory(spec.run_dir / "best") as staging:
                save_exported_model(run.accelerator.unwrap_model(run.model), staging, options)
    else:
        state["epochs_without_improvement"] += 1
    state["epoch"] = epoch + 1
    _save_checkpoint(run.accelerator, spec.run_dir, state)


def train_run(options, spec, model, processor, splits):
    """Train `model` on `splits["train"]`, keep the epoch with the best validation macro-F1 and return its metrics.

    Every epoch ends with a checkpoint in `run_dir/checkpoints/epoch-N` (model, optimizer, scheduler, trainer state);
    `spec.resume_from` continues from one to the same result as an uninterrupted run, because shuffling, dropout and
    image dropout depend only on (seed, epoch). The best model is saved to `run_dir/best` (LoRA adapters merged). The
    returned `image_errors` hold, per split, every row whose image could not be used (from all processes).
    """
    label_names = splits["train"].features["label"].names
    run = setup_run(options, spec, model, processor, splits)
    accelerator = run.accelerator
    image_errors = {name: dict(errors) for name, errors in run.image_errors.items()}

    state = {"epoch": 0, "best_metric": -1.0, "best_epoch": 0, "epochs_without_improvement": 0, "history": []}
    if spec.resume_from is not None:
        state = read_checkpoint_state(spec.resume_from)
        accelerator.load_state(str(spec.resume_from))
        logger.info("Resumed %s from %s (epoch %d)", spec.name, spec.resume_from, state["epoch"])

    for epoch in range(state["epoch"], options.num_epochs):
        if state["epochs_without_improvement"] >= options.early_stopping_patience:
            break
        epoch_start = time.perf_counter()
        train_loss, train_image_errors = train_epoch(run, epoch, spec, options.num_epochs)
        record_image_errors(image_errors, "train", train_image_errors)
        train_seconds = time.perf_counter() - epoch_start
        validation, validation_image_errors = evaluate_split(
            accelerator, run.model, run.eval_loaders["validation"], splits["validation"], label_names)
        record_image_errors(image_errors, "validation", validation_image_errors)
        macro_f1 = validation["overall"]["macro_f1"]
        state["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "validation_macro_f1": macro_f1,
                                 "train_seconds": train_seconds})
        accelerator.log({"train_loss": train_loss, "validation_macro_f1": macro_f1}, step=epoch + 1)
        logger.info("%s epoch %d: train loss %.4f, validation macro-F1 %.4f", spec.name, epoch + 1, train_loss,
                    macro_f1)
        end_epoch(options, run, spec, state, epoch, macro_f1)

    accelerator.wait_for_everyone()
    best = accelerator.prepare(M2SAForSequenceClassification.from_pretrained(spec.run_dir / "best"))
    results = {}
    for name in EVAL_SPLITS:
        results[name], split_image_errors = evaluate_split(accelerator, best, run.eval_loaders[name], splits[name],
                                                           label_names)
        record_image_errors(image_errors, name, split_image_errors)
    for tracker in accelerator.trackers:  # not `end_training()`: it also ends the process group the next run needs
        tracker.finish()
    return {"results": results, "history": state["history"], "best_epoch": state["best_epoch"],
            "feature_cache_seconds": run.feature_cache_seconds, "image_errors": gather_image_errors(image_errors)}


def gather_image_errors(image_errors):
    """Every process's {split: {row position: reason}}, merged (each process sees only its share of the rows)."""
    merged = {}
    for errors in gather_object([image_errors]):
        for split_name, rows in errors.items():
            merged.setdefault(split_name, {}).update(rows)
    return {split_name: dict(sorted(rows.items())) for split_name, rows in sorted(merged.items())}


def _save_checkpoint(accelerator, run_dir, state):
    """Save the epoch's checkpoint into a hidden folder and rename it into place once every process has written its
    files, so `checkpoints/epoch-N` only ever names a complete checkpoint."""
    checkpoint = run_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{state['epoch']}"
    staging = partial_path(checkpoint, unique=False)  # the same name in every process
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)  # left behind by a run killed while saving
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()  # every process writes its own random-state file into the folder
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / TRAINER_STATE).write_text(json.dumps(state, indent=2))
        replace_directory(staging, checkpoint)

"""One training run: Accelerate loop, validation each epoch, checkpoints, early stopping, best-checkpoint selection.

A job (train.py, or the whole grid) makes one `Accelerator` (`job_accelerator`) and its runs share it; each run
registers its model, optimizer, scheduler and loaders with it and releases them when it ends.
"""

import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import DistributedDataParallelKwargs, gather_object, set_seed
from tqdm.auto import tqdm

from m2sa_files.atomic import atomic_directory, partial_path, replace_directory, write_text_atomically
from m2sa_files.disk_full import describe, full_disk_failure
from modeling_m2sa import M2SAForSequenceClassification
from modeling_m2sa.backend_agreement import agreement_record, arithmetic_models
from modeling_m2sa.backends_m2sa import CONFIG_AGREEMENT_KEY
from modeling_m2sa.configuration_m2sa import REGRESSION
from modeling_m2sa.errors_m2sa import M2SAError

from ..command_line import disk_full_error
from ..evaluation.calibration import calibration_report, fit_temperature
from ..evaluation.metrics import BEST_MODEL_METRICS, compute_metrics, compute_regression_metrics
from .checkpoint_averaging import averaged_weights
from .data import IndexedRows, TweetCollator, model_inputs_and_image_errors
from .feature_cache import cached_features
from .lora import save_exported_model
from .modality_dropout import drop_images, image_dropout_for
from .optimization import optimizer_and_scheduler
from .options import NO_VISION

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
    """Everything `train_run` builds before the first epoch (prepared by the job's `Accelerator`)."""

    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_loader: torch.utils.data.DataLoader
    eval_loaders: dict
    feature_cache_seconds: float
    image_errors: dict = field(default_factory=dict)  # {split: {row position: reason}}
    image_dropout: float = 0.0  # probability that a training tweet is shown without its image in an epoch


def job_accelerator(options, find_unused_parameters):
    """The one `Accelerator` of a job, shared by all its runs (their options agree on everything it reads).

    `find_unused_parameters`: whether a run of the job can leave trainable parameters without a gradient in a step
    (`may_leave_parameters_unused`), which DDP must then look for.
    """
    return Accelerator(
        mixed_precision=options.mixed_precision,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        log_with=options.report_to,
        project_dir=options.output_dir,
        # Shuffling depends only on (seed, epoch): the sampler draws from torch's seed when it is prepared (the run's
        # seed, see `setup_run`) plus the epoch (`set_epoch`), so a resumed run sees the same batches.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
    )


def may_leave_parameters_unused(options):
    """Whether a training step can leave trainable parameters without a gradient: a trainable image tower (or its
    LoRA adapters) gets none from a batch without images."""
    return (options.vision_model != NO_VISION and not options.freeze_vision_model
            and any(modality != "text" for modality in options.modalities))


def frozen_towers(options, model, modality):
    """The towers whose features can be cached for this run (frozen by the options, and used by the model)."""
    towers = set()
    if options.freeze_text_model:
        towers.add("text")
    if model.config.vision_config is not None and options.freeze_vision_model and modality != "text":
        towers.add("vision")
    if towers and model.config.fusion_type == "cross_attention":
        logger.info("Features of the frozen %s tower(s) are recomputed every step: cross_attention fusion reads "
                    "their token and patch states, which the cache (pooled features) does not hold.",
                    " and ".join(sorted(towers)))
        return set()
    return towers


def numbered_checkpoints(run_dir):
    """[(epoch, folder)] of the run's `checkpoints/epoch-N` folders, newest first (complete or not)."""
    numbered = []
    for path in (Path(run_dir) / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*"):
        number = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
        if number is not None and path.is_dir():
            numbered.append((int(number[1]), path))
    return sorted(numbered, reverse=True)


def latest_checkpoint(run_dir):
    """The newest complete checkpoint of a run (None when it has none); incomplete ones are skipped with a warning."""
    for _, checkpoint in numbered_checkpoints(run_dir):
        try:
            read_checkpoint_state(checkpoint)
            return checkpoint
        except M2SAError as error:
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
        raise M2SAError(
            f"Checkpoint {str(checkpoint)!r} is incomplete or corrupt ({error}). Resume from an earlier checkpoint in "
            f"the same folder, or start without --resume-from-checkpoint.",
            code="bad_checkpoint",
        ) from error
    return state


def split_loader(options, processor, split, use_images, cached=None, shuffle=False):
    """The batches of `split` the model reads: from its tweets, or from `cached` tower features."""
    return torch.utils.data.DataLoader(
        IndexedRows(split), batch_size=options.batch_size, shuffle=shuffle,
        collate_fn=TweetCollator(processor, use_images, cached), num_workers=options.dataloader_num_workers,
    )


def setup_run(accelerator, options, spec, model, processor, splits):
    """Feature cache, data loaders, optimizer and scheduler, prepared by the job's `accelerator`."""
    use_images = model.config.vision_config is not None
    towers = frozen_towers(options, model, spec.modality) if options.cache_features else set()
    cached, image_errors = {}, {}
    feature_seconds = time.perf_counter()
    if towers:
        for split_name, split in splits.items():
            with accelerator.main_process_first():
                cached[split_name], image_errors[split_name] = cached_features(
                    model.m2sa, processor, split, use_images, towers, options.cache_dir)
    feature_seconds = time.perf_counter() - feature_seconds

    def loader(split_name, shuffle):
        return split_loader(options, processor, splits[split_name], use_images, cached.get(split_name), shuffle)

    optimizer, scheduler = optimizer_and_scheduler(model, options, len(splits["train"]))
    set_seed(spec.seed)  # the seedable sampler of the training loader takes torch's seed now: the run's
    model, optimizer, scheduler, train_loader, *eval_loaders = accelerator.prepare(
        model, optimizer, scheduler, loader("train", True), *(loader(name, False) for name in EVAL_SPLITS))
    return PreparedRun(accelerator, model, optimizer, scheduler, train_loader, dict(zip(EVAL_SPLITS, eval_loaders)),
                       feature_seconds, image_errors, image_dropout_for(options, spec.modality))


def train_epoch(options, run, spec, epoch):
    """One pass over the training data: (training loss, averaged over batches and processes; {row position: reason}
    of unusable images)."""
    accelerator, model = run.accelerator, run.model
    set_seed(spec.seed + epoch)  # dropout depends only on (seed, epoch): resuming repeats it exactly
    run.train_loader.set_epoch(epoch)
    model.train()
    progress = tqdm(run.train_loader, desc=f"{spec.name} epoch {epoch + 1}/{options.num_epochs}",
                    disable=not accelerator.is_local_main_process, leave=False)
    total_loss, image_errors = 0.0, {}
    for batch in progress:
        inputs, batch_image_errors = model_inputs_and_image_errors(batch)
        image_errors.update(batch_image_errors)
        if run.image_dropout:
            inputs["has_image"] = drop_images(inputs["has_image"], batch["row_index"].tolist(), spec.seed, epoch,
                                              run.image_dropout)
        with accelerator.accumulate(model):
            loss = training_loss(model(**inputs), inputs["labels"], options.label_smoothing)
            accelerator.backward(loss)
            if accelerator.sync_gradients and options.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), options.max_grad_norm)
            run.optimizer.step()
            run.scheduler.step()
            run.optimizer.zero_grad()
        step_loss = loss.item()
        total_loss += step_loss
        progress.set_postfix(loss=f"{step_loss:.3f}")
    process_loss = torch.tensor(total_loss / max(len(run.train_loader), 1), dtype=torch.float64,
                                device=accelerator.device)
    return accelerator.reduce(process_loss, reduction="mean").item(), image_errors


def training_loss(outputs, labels, label_smoothing):
    """The loss a training step minimises: the model's own (`config.problem_type`), or with `label_smoothing` the
    cross-entropy against smoothed labels (classification only)."""
    if not label_smoothing:
        return outputs.loss
    return torch.nn.functional.cross_entropy(outputs.logits.float(), labels, label_smoothing=label_smoothing)


def evaluate_split(accelerator, model, loader, split, problem_type):
    """(metrics of the model on `split`, {row position: reason} of unusable images): classification metrics of the
    arg-max labels, or for `problem_type` "regression" regression metrics of the head's values."""
    logits, image_errors = split_logits(accelerator, model, loader)
    return split_metrics(logits, split, problem_type), image_errors


def split_logits(accelerator, model, loader):
    """(the model's logits on every row of the loader's split, gathered from every process, in row order;
    {row position: reason} of unusable images)."""
    model.eval()
    logits, image_errors = [], {}
    with torch.inference_mode():
        for batch in loader:
            inputs, batch_image_errors = model_inputs_and_image_errors(batch)
            image_errors.update(batch_image_errors)
            inputs.pop("labels")
            logits.append(accelerator.gather_for_metrics(model(**inputs).logits.float()))
    return torch.cat(logits).cpu(), image_errors


def split_metrics(logits, split, problem_type):
    labels, languages = list(split["label"]), list(split["language"])
    if problem_type == REGRESSION:
        return compute_regression_metrics(labels, logits[:, 0].tolist(), languages)
    return compute_metrics(labels, logits.argmax(dim=-1).tolist(), languages, split.features["label"].names)


def record_image_errors(records, split_name, image_errors):
    records.setdefault(split_name, {}).update(image_errors)


def end_epoch(options, run, spec, state, epoch, validation_metric):
    """Best-model selection by `validation_metric` (`BEST_MODEL_METRICS` says which and in which direction),
    early-stopping count, the epoch's checkpoint and the removal of checkpoints beyond `--save-total-limit`."""
    accelerator = run.accelerator
    if BEST_MODEL_METRICS[options.problem_type].is_better(validation_metric, state["best_metric"]):
        state.update(best_metric=validation_metric, best_epoch=epoch + 1, epochs_without_improvement=0)
        save_best_model(options, run, spec)
    else:
        state["epochs_without_improvement"] += 1
    state["epoch"] = epoch + 1
    _save_checkpoint(accelerator, spec.run_dir, state)
    if accelerator.is_main_process:
        remove_old_checkpoints(spec.run_dir, options.save_total_limit, state["best_epoch"])


def save_best_model(options, run, spec):
    """Export the run's model as it is now to `run_dir/best` (LoRA adapters merged), replacing the one there."""
    accelerator, best = run.accelerator, spec.run_dir / "best"
    with stopping_when_the_disk_is_full(accelerator, best, partial_path(best, unique=False)):
        if accelerator.is_main_process:
            with atomic_directory(best) as staging:
                save_exported_model(accelerator.unwrap_model(run.model), staging, options)


def try_checkpoint_average(options, run, spec, state, splits):
    """`--average-last-checkpoints N`: give the run's model the mean weights of its last N epoch checkpoints (fewer
    when early stopping ended it sooner), evaluate it on validation, and save it as the best model when it beats the
    best epoch. Returns {"epochs", "validation_<metric>", "kept"}, or None with fewer than two checkpoints to average.
    A resumed run repeats it from the same checkpoints, to the same result."""
    best_model_metric = BEST_MODEL_METRICS[options.problem_type]
    last = numbered_checkpoints(spec.run_dir)[:options.average_last_checkpoints]
    if len(last) < 2:
        logger.info("%s: one epoch checkpoint, nothing to average; the best epoch stays the model.", spec.name)
        return None
    epochs = sorted(epoch for epoch, _ in last)
    run.accelerator.unwrap_model(run.model).load_state_dict(averaged_weights([path for _, path in last]))
    validation, _ = evaluate_split(run.accelerator, run.model, run.eval_loaders["validation"], splits["validation"],
                                   options.problem_type)
    metric = validation["overall"][best_model_metric.name]
    kept = best_model_metric.is_better(metric, state["best_metric"])
    if kept:
        save_best_model(options, run, spec)
    logger.info("%s: the average of epochs %s scores validation %s %.4f against the best epoch's (%d) %.4f: %s.",
                spec.name, ", ".join(map(str, epochs)), best_model_metric.title, metric, state["best_epoch"],
                state["best_metric"], "kept as the model" if kept else "the best epoch stays the model")
    return {"epochs": epochs, f"validation_{best_model_metric.name}": metric, "kept": kept}


def train_run(accelerator, options, spec, model, processor, splits):
    """Train `model` on `splits["train"]`, keep the epoch with the best validation metric (the highest macro-F1, or
    for regression the lowest MSE: `BEST_MODEL_METRICS`), or the average of the last epochs' weights when
    `--average-last-checkpoints` makes one that beats it, and return its metrics.

    Every epoch ends with a checkpoint in `run_dir/checkpoints/epoch-N` (model, optimizer, scheduler, trainer state);
    `spec.resume_from` continues from one to the same result as an uninterrupted run, because shuffling, dropout and
    image dropout depend only on (seed, epoch). The best model is saved to `run_dir/best` (LoRA adapters merged). The
    returned `image_errors` hold, per split, every row whose image could not be used (from all processes).
    `accelerator` is the job's: the run releases what it registered with it when it ends.
    """
    try:
        return _train_run(accelerator, options, spec, model, processor, splits)
    finally:
        accelerator.free_memory()  # the next run of the job registers (and checkpoints) only its own objects


def _train_run(accelerator, options, spec, model, processor, splits):
    best_model_metric = BEST_MODEL_METRICS[options.problem_type]
    run = setup_run(accelerator, options, spec, model, processor, splits)
    image_errors = {name: dict(errors) for name, errors in run.image_errors.items()}

    state = {"epoch": 0, "best_metric": None, "best_epoch": 0, "epochs_without_improvement": 0, "history": []}
    if spec.resume_from is not None:
        state = read_checkpoint_state(spec.resume_from)
        accelerator.load_state(str(spec.resume_from))
        logger.info("Resumed %s from %s (epoch %d)", spec.name, spec.resume_from, state["epoch"])

    for epoch in range(state["epoch"], options.num_epochs):
        if state["epochs_without_improvement"] >= options.early_stopping_patience:
            break
        epoch_start = time.perf_counter()
        train_loss, train_image_errors = train_epoch(options, run, spec, epoch)
        record_image_errors(image_errors, "train", train_image_errors)
        train_seconds = time.perf_counter() - epoch_start
        validation, validation_image_errors = evaluate_split(
            accelerator, run.model, run.eval_loaders["validation"], splits["validation"], options.problem_type)
        record_image_errors(image_errors, "validation", validation_image_errors)
        metric = validation["overall"][best_model_metric.name]
        metric_key = f"validation_{best_model_metric.name}"
        state["history"].append({"epoch": epoch + 1, "train_loss": train_loss, metric_key: metric,
                                 "train_seconds": train_seconds})
        accelerator.log({f"{spec.name}/train_loss": train_loss, f"{spec.name}/{metric_key}": metric}, step=epoch + 1)
        logger.info("%s epoch %d: train loss %.4f, validation %s %.4f", spec.name, epoch + 1, train_loss,
                    best_model_metric.title, metric)
        end_epoch(options, run, spec, state, epoch, metric)

    checkpoint_average = None
    if options.average_last_checkpoints:
        checkpoint_average = try_checkpoint_average(options, run, spec, state, splits)
    accelerator.wait_for_everyone()
    best = accelerator.prepare_model(M2SAForSequenceClassification.from_pretrained(spec.run_dir / "best"),
                                     evaluation_mode=True)
    results, logits = {}, {}
    for name in EVAL_SPLITS:
        logits[name], split_image_errors = split_logits(accelerator, best, run.eval_loaders[name])
        results[name] = split_metrics(logits[name], splits[name], options.problem_type)
        record_image_errors(image_errors, name, split_image_errors)
    calibration = agreement = None
    if options.calibrate and options.problem_type != REGRESSION:
        calibration = calibrate_best_model(accelerator, spec.run_dir / "best", logits, splits)
    if options.problem_type != REGRESSION:
        agreement = record_backend_agreement(accelerator, options, best, processor, splits["validation"],
                                             logits["validation"].argmax(dim=-1), spec.run_dir / "best")
    return {"results": results, "calibration": calibration, "backend_agreement": agreement,
            "history": state["history"],
            "best_epoch": state["best_epoch"], "checkpoint_average": checkpoint_average,
            "feature_cache_seconds": run.feature_cache_seconds,
            "image_errors": gather_image_errors(image_errors)}


def calibrate_best_model(accelerator, best_dir, logits, splits):
    """Fit the temperature on the validation logits, save it in the best model's config, and return the calibration
    report of each evaluation split (before and after)."""
    label_names = splits["validation"].features["label"].names
    labels = {name: torch.tensor(splits[name]["label"]) for name in EVAL_SPLITS}
    temperature = fit_temperature(logits["validation"], labels["validation"])
    add_to_saved_config(accelerator, best_dir, "calibration_temperature", temperature)
    return {name: calibration_report(logits[name], labels[name], temperature, label_names) for name in EVAL_SPLITS}


def record_backend_agreement(accelerator, options, best, processor, validation, fp32_labels, best_dir):
    """The best model's agreement record on the validation split (how often each low-precision arithmetic the
    pipeline can serve gives `fp32_labels`, the labels it was evaluated with: `backend_agreement`), saved in its
    config and returned. Each arithmetic reads the tweets themselves, since cached tower features would leave the
    towers' layers out of the comparison."""
    model = accelerator.unwrap_model(best)
    loader = accelerator.prepare_data_loader(
        split_loader(options, processor, validation, model.config.vision_config is not None))
    labels = {}
    for arithmetic, derived, autocast in arithmetic_models(model):
        with autocast():
            labels[arithmetic] = split_logits(accelerator, derived, loader)[0].argmax(dim=-1)
    record = agreement_record(fp32_labels, labels, "validation")
    add_to_saved_config(accelerator, best_dir, CONFIG_AGREEMENT_KEY, record)
    return record


def add_to_saved_config(accelerator, model_dir, key, value):
    """Set `key` in the config.json saved in `model_dir`, everything else as saved (by the main process, which the
    others wait for)."""
    if accelerator.is_main_process:
        config = json.loads((model_dir / "config.json").read_text())
        write_text_atomically(model_dir / "config.json", json.dumps({**config, key: value}, indent=2, sort_keys=True))
    accelerator.wait_for_everyone()


def gather_image_errors(image_errors):
    """Every process's {split: {row position: reason}}, merged (each process sees only its share of the rows)."""
    merged = {}
    for errors in gather_object([image_errors]):
        for split_name, rows in errors.items():
            merged.setdefault(split_name, {}).update(rows)
    return {split_name: dict(sorted(rows.items())) for split_name, rows in sorted(merged.items())}


@contextmanager
def stopping_when_the_disk_is_full(accelerator, target, staging):
    """Run the block (writes to `staging`, the hidden folder that becomes `target`) in every process, which then wait
    for each other. When the disk fills up in any of them, `staging` is removed, so only complete checkpoints stay to
    resume from, and every process stops with a `disk_full` error that says what to do."""
    out_of_space = None
    try:
        yield
    except Exception as error:
        out_of_space = full_disk_failure(error)
        if out_of_space is None:
            raise
    failures = [failure for failure in gather_object([out_of_space and describe(out_of_space)]) if failure is not None]
    if failures:
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        raise disk_full_error(
            f"saving {target} failed ({failures[0]})",
            then="run the same command again to continue from the last complete checkpoint (train.py with "
                 "--resume-from-checkpoint latest; --save-total-limit N keeps only the newest N checkpoints)",
            kept="The half-written copy was removed; every complete checkpoint is kept.",
        ) from out_of_space


def _save_checkpoint(accelerator, run_dir, state):
    """Save the epoch's checkpoint into a hidden folder and rename it into place once every process has written its
    files, so `checkpoints/epoch-N` only ever names a complete checkpoint."""
    checkpoint = run_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{state['epoch']}"
    staging = partial_path(checkpoint, unique=False)  # the same name in every process
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)  # left behind by a run killed while saving
    accelerator.wait_for_everyone()
    with stopping_when_the_disk_is_full(accelerator, checkpoint, staging):
        accelerator.save_state(str(staging))  # every process writes its own random-state file into the folder
        if accelerator.is_main_process:
            (staging / TRAINER_STATE).write_text(json.dumps(state, indent=2))
    if accelerator.is_main_process:  # every process has written its files: the block ends when all have
        replace_directory(staging, checkpoint)


def remove_old_checkpoints(run_dir, save_total_limit, best_epoch):
    """Keep the newest `save_total_limit` epoch checkpoints and the best epoch's, as the Trainer's `save_total_limit`
    (all of them when it is None). Called once the newest checkpoint is complete; each doomed folder is first renamed
    to a hidden name, so a kill while deleting never leaves a half checkpoint under a checkpoint's name."""
    if save_total_limit is None:
        return
    for epoch, checkpoint in numbered_checkpoints(run_dir)[save_total_limit:]:
        if epoch != best_epoch:
            doomed = partial_path(checkpoint, unique=False)
            shutil.rmtree(doomed, ignore_errors=True)
            os.rename(checkpoint, doomed)
            shutil.rmtree(doomed)

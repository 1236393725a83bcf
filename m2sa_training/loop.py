"""One training run: Accelerate loop, validation each epoch, checkpoints, early stopping, best-checkpoint selection."""

import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from modeling_m2sa import M2SAForSequenceClassification

from .data import IndexedRows, TweetCollator
from .evaluation import compute_metrics
from .feature_cache import cached_features

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
CHECKPOINT_PREFIX = "epoch-"


def frozen_towers(model, modality):
    """The towers whose features can be cached for this run."""
    config = model.config
    towers = set()
    if config.freeze_text_model:
        towers.add("text")
    if config.vision_config is not None and config.freeze_vision_model and modality != "text":
        towers.add("vision")
    return towers


def latest_checkpoint(run_dir):
    checkpoints = sorted((Path(run_dir) / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*"),
                         key=lambda path: int(path.name[len(CHECKPOINT_PREFIX):]))
    return checkpoints[-1] if checkpoints else None


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


def _make_loader(split, collator, batch_size, shuffle, seed):
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return torch.utils.data.DataLoader(
        IndexedRows(split), batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collator
    )


def predict_split(accelerator, model, loader):
    """Predicted label ids for every row of the loader's split, in order."""
    model.eval()
    predictions = []
    with torch.inference_mode():
        for batch in loader:
            batch.pop("labels")
            logits = model(**batch).logits
            predictions.append(accelerator.gather_for_metrics(logits.argmax(dim=-1)))
    return torch.cat(predictions).tolist()


def evaluate_split(accelerator, model, loader, split):
    return compute_metrics(list(split["label"]), predict_split(accelerator, model, loader), list(split["language"]))


def train_run(options, model, processor, splits, modality, seed, run_dir, resume_from=None):
    """Train `model` on `splits["train"]`, keep the epoch with the best validation macro-F1 and return its metrics.

    Every epoch ends with a checkpoint in `run_dir/checkpoints/epoch-N` (model, optimizer, scheduler, trainer state);
    `resume_from` continues from one to the same result as an uninterrupted run, because each epoch reseeds from
    (seed, epoch). The best model is saved to `run_dir/best`.
    """
    run_dir = Path(run_dir)
    find_unused = model.config.vision_config is not None and not model.config.freeze_vision_model
    accelerator = Accelerator(
        mixed_precision=options.mixed_precision,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        log_with=options.report_to,
        project_dir=str(run_dir),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused)],
    )
    towers = frozen_towers(model, modality) if options.cache_features else set()
    cached, invalid_images = {}, {}
    feature_seconds = time.perf_counter()
    for split_name, split in splits.items():
        if towers:
            with accelerator.main_process_first():
                features, invalid = cached_features(model.m2sa, processor, split, modality, towers,
                                                    options.cache_dir)
            cached[split_name] = features
            invalid_images.update({f"{split_name}:{k}": v for k, v in invalid.items()})
    feature_seconds = time.perf_counter() - feature_seconds
    collators = {name: TweetCollator(processor, modality, cached.get(name)) for name in splits}
    eval_loaders = {name: _make_loader(splits[name], collators[name], options.batch_size, False, seed)
                    for name in ("validation", "test")}

    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options.learning_rate, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(splits["train"]) / options.batch_size / options.gradient_accumulation_steps)
    total_steps = steps_per_epoch * options.num_epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(options.warmup_ratio * total_steps), total_steps)
    model, optimizer, scheduler, *loaders = accelerator.prepare(model, optimizer, scheduler, *eval_loaders.values())
    eval_loaders = dict(zip(eval_loaders, loaders))
    if options.report_to:
        accelerator.init_trackers(run_dir.name, config=json.loads(options.to_json()))

    state = {"epoch": 0, "best_metric": -1.0, "best_epoch": 0, "epochs_without_improvement": 0, "history": []}
    if resume_from is not None:
        state = read_checkpoint_state(resume_from)
        accelerator.load_state(str(resume_from))
        logger.info("Resumed %s from %s (epoch %d)", run_dir.name, resume_from, state["epoch"])

    for epoch in range(state["epoch"], options.num_epochs):
        if state["epochs_without_improvement"] >= options.early_stopping_patience:
            break
        set_seed(seed + epoch)  # dropout and shuffling depend only on (seed, epoch): resuming repeats them exactly
        train_loader = accelerator.prepare(
            _make_loader(splits["train"], collators["train"], options.batch_size, True, seed + epoch)
        )
        model.train()
        epoch_start = time.perf_counter()
        progress = tqdm(train_loader, desc=f"{run_dir.name} epoch {epoch + 1}/{options.num_epochs}",
                        disable=not accelerator.is_local_main_process, leave=False)
        epoch_loss = 0.0
        for batch in progress:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            epoch_loss += loss.item()
            progress.set_postfix(loss=f"{loss.item():.3f}")
        train_seconds = time.perf_counter() - epoch_start
        validation = evaluate_split(accelerator, model, eval_loaders["validation"], splits["validation"])
        macro_f1 = validation["overall"]["macro_f1"]
        state["history"].append({"epoch": epoch + 1, "train_loss": epoch_loss / max(len(train_loader), 1),
                                 "validation_macro_f1": macro_f1, "train_seconds": train_seconds})
        accelerator.log({"train_loss": state["history"][-1]["train_loss"], "validation_macro_f1": macro_f1},
                        step=epoch + 1)
        logger.info("%s epoch %d: train loss %.4f, validation macro-F1 %.4f", run_dir.name, epoch + 1,
                    state["history"][-1]["train_loss"], macro_f1)
        if macro_f1 > state["best_metric"]:
            state.update(best_metric=macro_f1, best_epoch=epoch + 1, epochs_without_improvement=0)
            if accelerator.is_main_process:
                accelerator.unwrap_model(model).save_pretrained(run_dir / "best")
        else:
            state["epochs_without_improvement"] += 1
        state["epoch"] = epoch + 1
        _save_checkpoint(accelerator, model, run_dir, state)

    accelerator.wait_for_everyone()
    best = M2SAForSequenceClassification.from_pretrained(run_dir / "best")
    best = accelerator.prepare(best)
    results = {name: evaluate_split(accelerator, best, eval_loaders[name], splits[name]) for name in eval_loaders}
    for tracker in accelerator.trackers:  # not `end_training()`: it also ends the process group the next run needs
        tracker.finish()
    invalid_images.update({f"train:{k}": v for k, v in collators["train"].invalid_images.items()})
    return {"results": results, "history": state["history"], "best_epoch": state["best_epoch"],
            "feature_cache_seconds": feature_seconds, "invalid_images": invalid_images}


def _save_checkpoint(accelerator, model, run_dir, state):
    checkpoint = run_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{state['epoch']}"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(checkpoint, ignore_errors=True)
        checkpoint.mkdir(parents=True)
    accelerator.wait_for_everyone()  # every process writes its own random-state file into the folder
    accelerator.save_state(str(checkpoint))
    if accelerator.is_main_process:
        # Written last: a checkpoint without it (a run killed while saving) is reported as incomplete on resume.
        (checkpoint / TRAINER_STATE).write_text(json.dumps(state, indent=2))

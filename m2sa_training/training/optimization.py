"""The optimizer and learning-rate schedule of a run: AdamW over the trainable parameters, with layer-wise learning-rate
decay on the text tower (`--layerwise-lr-decay`), warm-up and `--lr-scheduler`."""

import math
import re

import torch
from transformers import get_scheduler

from modeling_m2sa.errors_m2sa import M2SAError

from .options import ADAMW_IMPLEMENTATIONS

TEXT_TOWER_PREFIX = "m2sa.text_model."
LAYER_NUMBER = re.compile(r"\.(?:layer|layers|block)\.(\d+)\.")


def text_tower_depth(name, num_layers):
    """Where a parameter of the classifier sits for layer-wise decay: 0 for the text tower's embeddings, i + 1 for its
    layer i, `num_layers` for the rest of the text tower (its pooler, a final norm) and for every parameter outside it
    (head, fusion, image tower): those learn at the full rate."""
    if not name.startswith(TEXT_TOWER_PREFIX):
        return num_layers
    layer = LAYER_NUMBER.search(name[len(TEXT_TOWER_PREFIX) - 1:])
    if layer is not None:
        return int(layer[1]) + 1
    return 0 if ".embeddings." in name else num_layers


def parameter_groups(model, learning_rate, layerwise_lr_decay):
    """AdamW parameter groups of the trainable parameters, one per learning rate. With decay d, text-tower layer i of L
    learns at learning_rate * d^(L - 1 - i), its embeddings at learning_rate * d^L, everything else at learning_rate."""
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    if layerwise_lr_decay == 1:
        return [{"params": [parameter for _, parameter in trainable], "lr": learning_rate}]
    num_layers = getattr(model.config.text_config, "num_hidden_layers", None)
    if not num_layers or not any(name.startswith(TEXT_TOWER_PREFIX) and LAYER_NUMBER.search(name)
                                 for name, _ in trainable):
        raise M2SAError(
            f"--layerwise-lr-decay needs the text tower's numbered layers, but this tower "
            f"({model.config.text_config.model_type}) names none that M2SA recognises (`layer.N`, `layers.N`, "
            f"`block.N`); train it without --layerwise-lr-decay.",
            code="conflicting_options",
        )
    groups = {}
    for name, parameter in trainable:
        groups.setdefault(layerwise_lr_decay ** max(num_layers - text_tower_depth(name, num_layers), 0),
                          []).append(parameter)
    return [{"params": params, "lr": learning_rate * scale} for scale, params in sorted(groups.items(), reverse=True)]


def optimizer_and_scheduler(model, options, num_train_rows):
    """AdamW (`--optim`) over `parameter_groups` and the schedule over the run's optimizer steps (`--num-epochs` of
    `num_train_rows`): `--warmup-ratio` of them warming up linearly, then `--lr-scheduler`."""
    optimizer = torch.optim.AdamW(parameter_groups(model, options.learning_rate, options.layerwise_lr_decay),
                                  lr=options.learning_rate, weight_decay=options.weight_decay,
                                  **ADAMW_IMPLEMENTATIONS[options.optim])
    steps_per_epoch = math.ceil(num_train_rows / options.batch_size / options.gradient_accumulation_steps)
    total_steps = steps_per_epoch * options.num_epochs
    scheduler = get_scheduler(options.lr_scheduler, optimizer, num_warmup_steps=int(options.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    return optimizer, scheduler

"""LoRA adapters on the towers (PEFT), and the plain M2SA model a LoRA run exports.

Each chosen tower becomes a PEFT model wrapping the original encoder: its base weights are frozen and only the
low-rank adapters train. The head, the fusion module and the "no image" embedding live outside the towers, so they
stay fully trainable. Training and epoch checkpoints keep the adapters unmerged; the exported model has them merged
into the tower weights, so it loads with transformers alone.
"""

import copy

import torch

from modeling_m2sa.errors_m2sa import M2SAError

TOWER_ATTRIBUTES = {"text": "text_model", "vision": "vision_model"}
ADAPTER_DIR_PREFIX = "adapter_"


def lora_towers(options, has_vision_tower):
    """The towers that get LoRA adapters: those `--lora-towers` names that the model has (none without `--lora-r`)."""
    if options.lora_r == 0:
        return ()
    chosen = ("text", "vision") if options.lora_towers == "both" else (options.lora_towers,)
    return tuple(tower for tower in chosen if tower == "text" or has_vision_tower)


def lora_settings(options, has_vision_tower):
    """What the model card says of the LoRA adapters merged into a model (None for full fine-tuning)."""
    towers = lora_towers(options, has_vision_tower)
    if not towers:
        return None
    return {"r": options.lora_r, "alpha": options.lora_alpha, "dropout": options.lora_dropout,
            "towers": " and ".join(towers), "target_modules": " ".join(options.lora_target_modules)}


def add_lora_adapters(model, options):
    """Wrap the chosen towers of an `M2SAForSequenceClassification` in PEFT LoRA models, in place."""
    towers = lora_towers(options, model.config.vision_config is not None)
    if not towers:
        return
    from peft import LoraConfig, get_peft_model  # only LoRA runs need peft

    all_linear = options.lora_target_modules == ["all-linear"]
    for tower_name in towers:
        tower = getattr(model.m2sa, TOWER_ATTRIBUTES[tower_name])
        if not all_linear:
            check_target_modules(tower, tower_name, options)
        # A config per tower: PEFT writes the layer names it resolved (e.g. for all-linear) into the config it gets.
        lora_config = LoraConfig(
            r=options.lora_r,
            lora_alpha=options.lora_alpha,
            lora_dropout=options.lora_dropout,
            target_modules="all-linear" if all_linear else list(options.lora_target_modules),
        )
        setattr(model.m2sa, TOWER_ATTRIBUTES[tower_name], get_peft_model(tower, lora_config))


def check_target_modules(tower, tower_name, options):
    """Fail with the tower's layer names when `--lora-target-modules` names none of its modules."""
    module_names = {name.rsplit(".", 1)[-1] for name, _ in tower.named_modules()}
    if not module_names & set(options.lora_target_modules):
        linear_names = sorted({name.rsplit(".", 1)[-1] for name, module in tower.named_modules()
                               if isinstance(module, torch.nn.Linear)})
        raise M2SAError(
            f"--lora-target-modules {' '.join(options.lora_target_modules)} names no layer of the {tower_name} tower "
            f"({tower.config.model_type}), whose Linear layers are {linear_names}. Name layers of every tower in "
            f"--lora-towers {options.lora_towers}, or use all-linear.",
            code="bad_lora_target_modules",
        )


def save_exported_model(model, directory, options):
    """Save `model` as a plain M2SA model: LoRA adapters are merged into a copy of their towers (the training model
    keeps them unmerged). With `--save-adapter`, each adapter is also saved as a PEFT folder `adapter_<tower>/`."""
    towers = lora_towers(options, model.config.vision_config is not None)
    if towers:
        if options.save_adapter:
            for tower_name in towers:
                getattr(model.m2sa, TOWER_ATTRIBUTES[tower_name]).save_pretrained(
                    directory / f"{ADAPTER_DIR_PREFIX}{tower_name}")
        model = copy.deepcopy(model)
        for tower_name in towers:
            attribute = TOWER_ATTRIBUTES[tower_name]
            setattr(model.m2sa, attribute, getattr(model.m2sa, attribute).merge_and_unload())
    model.save_pretrained(directory)

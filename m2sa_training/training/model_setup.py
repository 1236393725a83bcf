"""Towers and model for a run: pretrained towers by Hub id or path, or small ones built from scratch."""

from pathlib import Path

from accelerate.utils import set_seed
from transformers import AutoConfig

from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor
from modeling_m2sa.configuration_m2sa import REGRESSION
from modeling_m2sa.errors_m2sa import M2SAError

from ..processes import process_state
from .lora import add_lora_adapters
from .options import NO_VISION, TINY
from .tiny_towers import save_tiny_text_tower, save_tiny_vision_tower

TINY_IMAGE_SIZE, TINY_PATCH_SIZE, TINY_HEAD_SIZE = 32, 8, 16


def check_tower_exists(name_or_path, role):
    """Fail before any training when a tower id or path cannot be resolved."""
    if name_or_path in (TINY, NO_VISION):
        return
    try:
        AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        where = "local directory" if Path(name_or_path).exists() else "Hub model id (or it needs network access)"
        raise M2SAError(
            f"The {role} tower {name_or_path!r} could not be loaded as a {where}: {error}. "
            f"Pass an existing Hub id, a directory saved with save_pretrained, or '{TINY}'.",
            code="tower_not_found",
        ) from error


def tower_paths(options, train_texts, work_dir, seed):
    """(text tower, vision tower or None) as paths/ids; `tiny` towers are built into `work_dir` with `seed`.

    Under multi-process training the main process builds them and the others load what it saved.
    """
    work_dir = Path(work_dir)
    text_tower, vision_tower = options.text_model, options.vision_model
    state = process_state()
    with state.main_process_first():
        set_seed(seed)
        sizes = dict(hidden_size=options.tiny_hidden_size, num_layers=options.tiny_num_layers,
                     num_heads=max(1, options.tiny_hidden_size // TINY_HEAD_SIZE))
        if text_tower == TINY:
            text_tower = str(work_dir / "text-tower")
            if state.is_main_process:
                save_tiny_text_tower(text_tower, train_texts, kind="xlm-roberta", vocab_size=options.tiny_vocab_size,
                                     max_length=options.max_length, **sizes)
        if vision_tower == TINY:
            vision_tower = str(work_dir / "vision-tower")
            if state.is_main_process:
                save_tiny_vision_tower(vision_tower, kind="clip", image_size=TINY_IMAGE_SIZE,
                                       patch_size=TINY_PATCH_SIZE, **sizes)
    return text_tower, (None if vision_tower == NO_VISION else vision_tower)


def head_config(options):
    """The config of the model's head: the three sentiment classes (the config's default), or for
    `--problem-type regression` one output named after the label column, as transformers' regression heads."""
    if options.problem_type != REGRESSION:
        return {}
    name = options.label_column
    return dict(problem_type=REGRESSION, num_labels=1, id2label={0: name}, label2id={name: 0})


def build_model_and_processor(options, modality, text_tower, vision_tower, seed, training_languages=None):
    """The M2SA classifier (or regressor) and processor for one modality (`text` drops the image tower), with the
    options' head, fusion, frozen towers, LoRA adapters and gradient checkpointing; its config records the
    `training_languages` of the rows it will learn from."""
    vision_tower = None if modality == "text" else vision_tower
    set_seed(seed)  # the fusion, head, "no image" embedding and LoRA adapters start from seeded random weights
    model = M2SAForSequenceClassification.from_towers(
        text_tower,
        vision_tower,
        # A text-only model has nothing to fuse: its text features go to the head as they are.
        fusion_type=options.fusion if vision_tower is not None else "concat",
        cross_attention_layers=options.cross_attention_layers,
        training_languages=training_languages,
        **head_config(options),
    )
    # Freezing is a choice of this training, not part of the model: it is set on the built model, not in its config.
    model.set_tower_freezing(freeze_text_model=options.freeze_text_model,
                             freeze_vision_model=options.freeze_vision_model)
    if options.freeze_word_embeddings:
        model.get_input_embeddings().requires_grad_(False)
    add_lora_adapters(model, options)
    if options.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    processor = M2SAProcessor.from_towers(text_tower, vision_tower, max_length=options.max_length,
                                          text_normalization=options.text_normalization,
                                          text_prefix=options.text_prefix)
    return model, processor


def enable_gradient_checkpointing(model):
    """Recompute the towers' layer activations in the backward pass instead of keeping them (transformers' switch;
    frozen towers run in eval mode, where it does nothing)."""
    # Non-reentrant checkpointing gives the weights inside a checkpointed layer (LoRA adapters included) their
    # gradients even when the layer's input needs none.
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    # The switch also makes the embedding outputs require grad, which only reentrant checkpointing needs; it would
    # make the backward pass run through the layers of a frozen tower for nothing.
    model.disable_input_require_grads()

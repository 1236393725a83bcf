"""Training options: plain defaults, named presets, an optional YAML file and command-line flags, merged in that order.

The flags, their types, choices and help come from the `TrainingOptions` dataclass through transformers'
`HfArgumentParser`.
"""

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from transformers import HfArgumentParser

from modeling_m2sa.configuration_m2sa import CLASSIFICATION, FUSION_CHOICES, REGRESSION
from modeling_m2sa.errors_m2sa import M2SAError
from modeling_m2sa.normalization_m2sa import TEXT_NORMALIZATIONS

TINY = "tiny"
"""Tower value meaning: build a small tower from scratch (and train a tokenizer on the training texts)."""
NO_VISION = "none"
MODALITIES = ("multimodal", "text", "image")

XLMR_SM = "cardiffnlp/twitter-xlm-roberta-base-sentiment-multilingual"
TEXT_TOWERS = {"mbert": "google-bert/bert-base-multilingual-cased", "xlmr": "FacebookAI/xlm-roberta-base",
               "xlmr_sm": XLMR_SM}  # fmt: skip
VISION_TOWERS = {"clip": "openai/clip-vit-base-patch32", "dinov2": "facebook/dinov2-base", "none": NO_VISION}
MULTILINGUAL_E5_SMALL = "intfloat/multilingual-e5-small"
UMSAB_MULTILINGUAL_E5 = dict(text_model=MULTILINGUAL_E5_SMALL, vision_model=NO_VISION, modalities=["text"],
                             languages=["all"], learning_rate=5e-5, batch_size=32, num_epochs=3,
                             freeze_word_embeddings=True, label_smoothing=0.1)
"""One multilingual-e5-small model for all languages of a text dataset (UMSAB's eight): the budget of
`benchmarks/bench_multilingual.py` (learning rate 5e-5, batch 32) with the word embeddings frozen (the same validation
macro-F1, 1.35-1.5x faster to train), 3 epochs instead of 2 (validation macro-F1 higher on both seeds of full runs,
+0.0035, at 1.4x the training time) and label smoothing 0.1 (higher on both seeds again, +0.0072, at no cost). Chosen
on validation by `benchmarks/bench_recipe.py` (docs/experiments/recipe-full-runs.md); test macro-F1 over UMSAB's
eight languages 0.641 (2 seeds): neither validation gain shows on test (2 epochs without smoothing: 0.644)."""
PAPER_HYPERPARAMETERS = dict(learning_rate=5e-5, batch_size=8, weight_decay=0.1, num_epochs=10,
                             early_stopping_patience=3, max_length=128)  # fmt: skip

PRESETS = {
    TINY: {},  # the TrainingOptions defaults
    **{
        f"paper_{text}_{vision}": dict(
            text_model=text_id, vision_model=vision_id, modalities=["multimodal"], **PAPER_HYPERPARAMETERS
        )
        for text, text_id in TEXT_TOWERS.items()
        for vision, vision_id in VISION_TOWERS.items()
    },
    "umsab_multilingual_e5": UMSAB_MULTILINGUAL_E5,
}  # fmt: skip
"""`tiny`: the offline default (small towers from scratch on the embedded demo set, all three modalities).
`paper_<text>_<vision>`: the paper's tower combinations and hyper-parameters.
`umsab_multilingual_e5`: multilingual-e5-small, text only, one model for all languages (`UMSAB_MULTILINGUAL_E5`)."""


ADAMW_IMPLEMENTATIONS = {
    "adamw_torch": {}, "adamw_torch_fused": {"fused": True}, "adamw_torch_foreach": {"foreach": True}
}
"""`--optim` choices -> keyword arguments of `torch.optim.AdamW` (named as transformers' `TrainingArguments.optim`)."""


LR_SCHEDULERS = ("linear", "cosine", "constant_with_warmup")
"""`--lr-scheduler` choices: transformers' `get_scheduler` names (after the warm-up: linear decay to 0, cosine decay to
0, or constant)."""

ADDED_LATER = ("lr_scheduler", "layerwise_lr_decay", "freeze_word_embeddings", "label_smoothing", "text_prefix",
               "average_last_checkpoints")
"""Options that came after runs were saved, whose defaults compute what runs did before they existed: a saved
`run_config.json` without one of them holds a run with its default (`value_when_absent`). A new option joins them only
when its default keeps the old behaviour."""


def _option(default, help_text):
    """A dataclass field with its `--flag` help (read by `HfArgumentParser`), which shows the default."""
    metadata = {"help": f"{help_text} (default: {default})"}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainingOptions:
    """Everything a training run reads; saved as `run_config.json` in the output directory.

    The defaults are the `tiny` preset: the offline default run.
    """

    preset: Literal[tuple(PRESETS)] = _option(TINY, "named defaults")
    text_model: str = _option(TINY, "text tower: Hub id, local path, or 'tiny' (small tower from scratch)")
    vision_model: str = _option(TINY, "image tower: Hub id, local path, 'tiny', or 'none' for a text-only model")
    dataset: str | None = _option(
        None, "Hub id, local directory (built by dataset_script/ or any load_dataset-able folder) or data file "
              "(.parquet, .csv, .tsv, .json, .jsonl); None: the embedded demo set")
    dataset_config: list[str] | None = _option(
        None, "configs of --dataset to train and evaluate on (e.g. english german); None: those --languages names")
    languages: list[str] = _option(
        ["all"], "configs to train and evaluate on: language codes (de en ...), 'all', or *_mt sets")
    text_column: str = _option("text", "dataset column holding the tweet text")
    image_column: str = _option(
        "image", "dataset column holding the images (an Image column, image bytes or file paths); data without it "
                 "is text-only")
    label_column: str = _option("label", "dataset column holding the sentiment label")
    problem_type: Literal[CLASSIFICATION, REGRESSION] = _option(
        CLASSIFICATION, "single_label_classification: sentiment classes (negative/neutral/positive); regression: one "
                        "number per tweet read from --label-column (e.g. sentiment intensity in [-1, 1]), learnt with "
                        "a mean-squared-error head (num_labels=1), as transformers' config.problem_type")
    language_column: str = _option(
        "language", "dataset column holding each row's language; without it the config name is the language "
                    "('und' for a dataset with only a 'default' config)")
    label_names: list[str] | None = _option(
        None, "names of integer labels 0, 1, 2, ... in order, e.g. negative neutral positive; None: ClassLabel "
              "names, label strings, or integers -1/0/1")
    include_translated: bool = _option(
        False, "also train on the machine-translated *_mt sets of the chosen languages (train rows only: validation "
               "and test stay the real tweets)")
    modalities: list[str] = _option(
        list(MODALITIES), "one model per entry: multimodal, text (no image tower), image (texts blanked)")
    optim: Literal[tuple(ADAMW_IMPLEMENTATIONS)] = _option(
        "adamw_torch", "AdamW implementation, named as TrainingArguments.optim: adamw_torch (torch's default for the "
                       "device), adamw_torch_fused (one fused kernel for all parameters), adamw_torch_foreach "
                       "(multi-tensor kernels); the same update in each")
    learning_rate: float = _option(1e-3, "peak learning rate of AdamW")
    weight_decay: float = _option(0.01, "AdamW weight decay")
    batch_size: int = _option(32, "tweets per batch (per process)")
    gradient_accumulation_steps: int = _option(1, "optimizer step every N batches")
    num_epochs: int = _option(8, "maximum number of epochs")
    early_stopping_patience: int = _option(
        3, "stop after N epochs without a better validation metric (macro-F1; MSE for --problem-type regression)")
    warmup_ratio: float = _option(0.0, "fraction of steps with linear learning-rate warm-up")
    lr_scheduler: Literal[LR_SCHEDULERS] = _option(
        "linear", "learning rate after the warm-up, as transformers' get_scheduler names it: linear (decay to 0), "
                  "cosine (cosine decay to 0) or constant_with_warmup")
    layerwise_lr_decay: float = _option(
        1.0, "text tower only: each layer below the top learns at this factor of the layer above (the word embeddings "
             "at factor^layers, the head and everything outside the text tower at the full rate); 1: no decay")
    freeze_word_embeddings: bool = _option(
        False, "do not train the text tower's word embeddings (a multilingual vocabulary's rows for words the training "
               "data lacks stay where pretraining put them; each step is faster, the optimizer skipping that matrix)")
    label_smoothing: float = _option(
        0.0, "training loss only (classification): cross-entropy against labels smoothed by this share spread over "
             "all classes, as torch's CrossEntropyLoss(label_smoothing=...); validation and test are unchanged")
    average_last_checkpoints: int = _option(
        0, "after the last epoch, average the weights of the last N epoch checkpoints (checkpoint averaging, as "
           "fairseq's average_checkpoints --num-epoch-checkpoints N) and keep the average as the model when its "
           "validation metric beats the best epoch's; 0: off")
    max_grad_norm: float | None = _option(
        1.0, "clip the gradients to this total norm before each optimizer step, as the Trainer does; 0 (or None in a "
             "YAML file): no clipping")
    max_length: int = _option(64, "maximum tokens per tweet")
    text_normalization: Literal[TEXT_NORMALIZATIONS] = _option(
        "twitter", "how tweets are written before tokenising, saved with the processor so every later use reads them "
                   "alike: twitter (mentions -> @user, links -> http, as XLM-T and UMSAB; idempotent on such text) or "
                   "none (as given)")
    text_prefix: str = _option(
        "", "put before every tweet's text, saved with the processor: a text tower's input convention, e.g. 'query: ' "
            "for multilingual-e5 (quote it to keep the space)")
    fusion: Literal[FUSION_CHOICES] = _option(
        "concat", "how text and image features are combined: concat (the paper's), gated, late or cross_attention; "
                  "a text-only model always uses concat")
    cross_attention_layers: int = _option(1, "layers of --fusion cross_attention")
    image_dropout: float = _option(
        0.0, "training only: probability in [0, 1) that a tweet is shown without its image in an epoch (multimodal "
             "model only; decided by the seed, the epoch and the row)")
    freeze_text_model: bool = _option(False, "do not train the text tower (its features are cached)")
    freeze_vision_model: bool = _option(False, "do not train the image tower (its features are cached)")
    cache_features: bool = _option(
        True, "cache features of frozen towers on disk (use --no-cache-features to recompute)")
    lora_r: int = _option(0, "rank of LoRA adapters on the towers (their base weights frozen); 0: no LoRA")
    lora_alpha: int = _option(16, "LoRA scaling numerator: adapters are scaled by lora_alpha / lora_r")
    lora_dropout: float = _option(0.05, "dropout on the inputs of the LoRA adapters")
    lora_towers: Literal["text", "vision", "both"] = _option(
        "both", "towers that get LoRA adapters (a text-only model: its text tower); other towers train fully unless "
                "frozen")
    lora_target_modules: list[str] = _option(
        ["all-linear"], "Linear layers that get adapters: all-linear, or module names of the chosen towers "
                        "(e.g. query value q_proj v_proj)")
    save_adapter: bool = _option(
        False, "also save the LoRA adapters as PEFT folders (adapter_text/, adapter_vision/) next to the merged model")
    gradient_checkpointing: bool = _option(
        False, "recompute the towers' layer activations in the backward pass instead of keeping them: less memory, "
               "one more forward pass of the towers per step")
    mixed_precision: Literal["no", "bf16", "fp16"] = _option(
        "no", "bf16 needs a GPU or a CPU with native bf16; fp16 needs a GPU")
    seeds: list[int] = _option([42], "one run per seed; results are aggregated as mean ± std")
    calibrate: bool = _option(
        True, "fit a temperature on the validation split after training, saved in the model's config so the pipeline "
              "gives calibrated probabilities (labels unchanged); --no-calibrate: the softmax as trained")
    dataloader_num_workers: int = _option(0, "worker processes that decode images and build batches")
    output_dir: str = _option(
        "outputs/m2sa-demo", "where the model, processor, model card, reports and checkpoints go")
    cache_dir: str = _option(".cache/m2sa", "where cached tower features and the generated demo set go")
    resume_from_checkpoint: str | None = _option(
        None, "a checkpoint directory, or 'latest' to continue every run from its last checkpoint")
    save_total_limit: int | None = _option(
        None, "keep only the newest N epoch checkpoints of each run, plus the best epoch's (as the Trainer's "
              "save_total_limit); None: keep all")
    overwrite_output_dir: bool = _option(False, "allow an output directory that holds a different run")
    push_to_hub: str | None = _option(None, "Hub model repo id to upload the output directory to")
    report_to: Literal["tensorboard", "trackio"] | None = _option(None, "experiment tracker")
    max_train_samples: int | None = _option(None, "use only the first N training examples (quick experiments)")
    tiny_vocab_size: int = _option(4000, "tokenizer vocabulary of a 'tiny' text tower (trained on the training texts)")
    tiny_hidden_size: int = _option(64, "hidden size of 'tiny' towers")
    tiny_num_layers: int = _option(2, "transformer layers of 'tiny' towers")

    def run_identity(self):
        """The options that define what a run computes (not where it resumes from or is pushed to)."""
        identity = dataclasses.asdict(self)
        for key in ("resume_from_checkpoint", "overwrite_output_dir", "push_to_hub", "report_to", "output_dir",
                    "dataloader_num_workers", "save_total_limit", "calibrate"):
            identity.pop(key)
        return identity

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


NOT_RECORDED = object()
"""What a run_config.json without an option says of its value, unless the option is one of `ADDED_LATER`: nothing
(equal to no value)."""


def value_when_absent(name):
    """The value of option `name` in a run_config.json that does not name it: the option's default for one of
    `ADDED_LATER` (the run predates it), else `NOT_RECORDED`."""
    return TrainingOptions.__dataclass_fields__[name].default if name in ADDED_LATER else NOT_RECORDED


def build_parser():
    """`HfArgumentParser` over `TrainingOptions` plus `--config`; only flags given on the command line are set."""
    parser = HfArgumentParser(
        TrainingOptions,
        description="Train an M2SA model. Precedence: defaults (the tiny preset) < --preset < --config YAML < flags.",
    )
    parser.add_argument("--config", type=Path, help="YAML file with any of the options below (underscores)")
    for option in dataclasses.fields(TrainingOptions):
        if option.default is False:  # `--x` turns it on; `--no-x` turns it off again after a preset or YAML file
            parser.add_argument(f"--no_{option.name}", f"--no-{option.name.replace('_', '-')}", action="store_false",
                                dest=option.name, help=f"turn off --{option.name.replace('_', '-')}")
    # Unset flags stay out of the parsed namespace, so presets and the YAML file apply beneath the flags given.
    # (`set_defaults(x=SUPPRESS)` would not do: argparse then stores the SUPPRESS string itself.)
    for action in parser._actions:
        if action.dest in TrainingOptions.__dataclass_fields__:
            action.default = argparse.SUPPRESS
    return parser


def parse_options(argv=None, settings=None):
    """Options from presets, `settings`, an optional YAML `--config` and flags (each overriding the one before);
    raises `M2SAError` for unknown or bad values.

    `settings` is a mapping of option names to values, as a YAML file holds them (the grid's shared settings)."""
    parser = build_parser()
    from_flags = vars(parser.parse_args(argv))
    config_path = from_flags.pop("config", None)
    from_settings = checked_settings(parser, settings or {}, "the settings")
    from_file = {}
    if config_path is not None:
        if not config_path.is_file():
            raise M2SAError(f"Config file {str(config_path)!r} does not exist.", code="missing_config_file")
        from_file = checked_settings(parser, yaml.safe_load(config_path.read_text()) or {}, str(config_path))
    from_file = {**from_settings, **from_file}
    preset = from_flags.get("preset", from_file.get("preset", TINY))
    if preset not in PRESETS:
        raise M2SAError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.", code="bad_option")
    merged = {**PRESETS[preset], **from_file, **from_flags, "preset": preset}
    if merged.get("vision_model") == NO_VISION and "modalities" not in {**from_file, **from_flags}:
        merged["modalities"] = ["text"]  # without an image tower only the text-only model can be trained
    (options,) = parser.parse_dict(merged)
    validate_options(options)
    options.max_grad_norm = options.max_grad_norm or 0.0  # None and 0 both mean no clipping; saved as 0.0
    return options


def checked_settings(parser, settings, where):
    """`settings` (option name -> value) with single values of list options as lists; unknown names refused."""
    if not isinstance(settings, dict):
        raise M2SAError(f"{where} must map option names to values, got {type(settings).__name__}.",
                        code="bad_config_file")
    settings = listed_scalars(settings)
    try:
        parser.parse_dict({**settings, "preset": TINY})  # unknown keys are refused here
    except (TypeError, ValueError) as error:
        known = sorted(TrainingOptions.__dataclass_fields__)
        raise M2SAError(f"Unknown options in {where}: {error}. Known options: {known}.",
                        code="unknown_option") from error
    return settings


def listed_scalars(from_file):
    """YAML values with a single value for a list option as one-element lists (`lora_target_modules: all-linear`)."""
    hints = typing.get_type_hints(TrainingOptions)

    def takes_a_list(annotation):
        return typing.get_origin(annotation) is list or any(map(takes_a_list, typing.get_args(annotation)))

    return {name: [value] if name in hints and takes_a_list(hints[name]) and value is not None
            and not isinstance(value, list) else value for name, value in from_file.items()}


def validate_options(options):
    unknown_modalities = sorted(set(options.modalities) - set(MODALITIES))
    if unknown_modalities:
        raise M2SAError(f"Unknown modalities {unknown_modalities}; choose from {MODALITIES}.", code="bad_option")
    if options.vision_model == NO_VISION and set(options.modalities) - {"text"}:
        raise M2SAError("--vision-model none trains a text-only model; use --modalities text (or pick an image tower).",
                        code="conflicting_options")
    if options.problem_type == REGRESSION and options.label_names:
        raise M2SAError(f"--label-names {' '.join(options.label_names)} names sentiment classes, but --problem-type "
                        f"regression reads numbers; drop --label-names.", code="conflicting_options")
    if options.dataset_config and options.languages != ["all"]:
        raise M2SAError(
            f"--dataset-config {' '.join(options.dataset_config)} and --languages {' '.join(options.languages)} both "
            f"choose the configs to load; pass only one of them.",
            code="conflicting_options",
        )
    for name in ("batch_size", "num_epochs", "gradient_accumulation_steps", "max_length"):
        if getattr(options, name) < 1:
            raise M2SAError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}.",
                            code="bad_option")
    if options.dataloader_num_workers < 0:
        raise M2SAError(f"--dataloader-num-workers must be 0 or more, got {options.dataloader_num_workers}.",
                        code="bad_option")
    if options.max_grad_norm is not None and options.max_grad_norm < 0:
        raise M2SAError(f"--max-grad-norm must be positive (or 0 for no clipping), got {options.max_grad_norm}.",
                        code="bad_option")
    if options.save_total_limit is not None and options.save_total_limit < 1:
        raise M2SAError(f"--save-total-limit must be at least 1, got {options.save_total_limit}; leave it out to "
                        f"keep every checkpoint.", code="bad_option")
    if not 0 < options.layerwise_lr_decay <= 1:
        raise M2SAError(f"--layerwise-lr-decay is a factor in (0, 1] (1: no decay), got {options.layerwise_lr_decay}.",
                        code="bad_option")
    if not 0 <= options.label_smoothing < 1:
        raise M2SAError(f"--label-smoothing is a share in [0, 1), got {options.label_smoothing}.", code="bad_option")
    if options.label_smoothing and options.problem_type == REGRESSION:
        raise M2SAError("--label-smoothing smooths class labels, but --problem-type regression learns numbers; drop "
                        "--label-smoothing.", code="conflicting_options")
    validate_checkpoint_averaging(options)
    if options.freeze_word_embeddings and options.freeze_text_model:
        raise M2SAError("--freeze-text-model already freezes the whole text tower, word embeddings included; drop "
                        "--freeze-word-embeddings.", code="conflicting_options")
    for name in ("problem_type", "fusion", "lora_towers", "mixed_precision", "optim", "report_to", "lr_scheduler"):
        choices = literal_choices(typing.get_type_hints(TrainingOptions)[name])
        if getattr(options, name) not in choices:  # YAML values do not pass through argparse's `choices`
            raise M2SAError(f"--{name.replace('_', '-')} must be one of {choices}, got {getattr(options, name)!r}.",
                            code="bad_option")
    if options.cross_attention_layers < 1:
        raise M2SAError(f"--cross-attention-layers must be at least 1, got {options.cross_attention_layers}.",
                        code="bad_option")
    for name in ("image_dropout", "lora_dropout"):
        if not 0 <= getattr(options, name) < 1:
            raise M2SAError(f"--{name.replace('_', '-')} is a probability in [0, 1), got {getattr(options, name)}.",
                            code="bad_option")
    validate_lora_options(options)


def validate_checkpoint_averaging(options):
    n = options.average_last_checkpoints
    if n == 0:
        return
    if n < 2:
        raise M2SAError(f"--average-last-checkpoints averages N >= 2 epoch checkpoints, got {n}; pass 0 to keep the "
                        f"best epoch as it is.", code="bad_option")
    if n > options.num_epochs:
        raise M2SAError(f"--average-last-checkpoints {n} needs {n} epochs, but --num-epochs is {options.num_epochs}; "
                        f"raise --num-epochs or average fewer checkpoints.", code="conflicting_options")
    if options.save_total_limit is not None and options.save_total_limit < n:
        raise M2SAError(f"--average-last-checkpoints {n} reads the last {n} epoch checkpoints, but --save-total-limit "
                        f"{options.save_total_limit} keeps fewer; raise --save-total-limit to {n} or leave it out.",
                        code="conflicting_options")
    if options.lora_r:
        raise M2SAError("--average-last-checkpoints with LoRA (--lora-r) would average each adapter's two factors "
                        "apart, which is not the average of the weights they add; drop one of them.",
                        code="conflicting_options")


def validate_lora_options(options):
    if options.lora_r < 0:
        raise M2SAError(f"--lora-r must be 0 (no LoRA) or a positive rank, got {options.lora_r}.", code="bad_option")
    if options.lora_alpha <= 0:
        raise M2SAError(f"--lora-alpha must be positive, got {options.lora_alpha}.", code="bad_option")
    if "all-linear" in options.lora_target_modules and len(options.lora_target_modules) > 1:
        raise M2SAError(
            f"--lora-target-modules {' '.join(options.lora_target_modules)} mixes 'all-linear' with module names; pass "
            f"either all-linear or the names.",
            code="bad_option",
        )
    if options.lora_r == 0:
        if options.save_adapter:
            raise M2SAError("--save-adapter saves LoRA adapters, but LoRA is off; pass --lora-r N (N > 0) as well.",
                            code="conflicting_options")
        return
    if options.lora_towers == "vision" and options.vision_model == NO_VISION:
        raise M2SAError("--lora-towers vision adapts the image tower, but --vision-model none has none; "
                        "use --lora-towers text.", code="conflicting_options")
    for tower, frozen in (("text", options.freeze_text_model), ("vision", options.freeze_vision_model)):
        if frozen and options.lora_towers in (tower, "both"):
            raise M2SAError(
                f"--freeze-{tower}-model and LoRA on the {tower} tower (--lora-towers {options.lora_towers}) "
                f"contradict each other: a frozen tower gets no adapters. Drop --freeze-{tower}-model, or leave the "
                f"{tower} tower out of --lora-towers.",
                code="conflicting_options",
            )


def literal_choices(annotation):
    """The allowed values of a `Literal[...]` annotation (with None for `Literal[...] | None`)."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return tuple(value for member in typing.get_args(annotation) for value in literal_choices(member) or (None,))

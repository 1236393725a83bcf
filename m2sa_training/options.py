"""Training options: plain defaults, named presets, an optional YAML file and command-line flags, merged in that order."""

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TINY = "tiny"
"""Tower value meaning: build a small tower from scratch (and train a tokenizer on the training texts)."""
NO_VISION = "none"
MODALITIES = ("multimodal", "text", "image")
MIXED_PRECISIONS = ("no", "bf16", "fp16")

XLMR_SM = "cardiffnlp/twitter-xlm-roberta-base-sentiment-multilingual"
TEXT_TOWERS = {"mbert": "google-bert/bert-base-multilingual-cased", "xlmr": "FacebookAI/xlm-roberta-base",
               "xlmr_sm": XLMR_SM}  # fmt: skip
VISION_TOWERS = {"clip": "openai/clip-vit-base-patch32", "dinov2": "facebook/dinov2-base", "none": NO_VISION}
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
}  # fmt: skip
"""`tiny`: the offline default (small towers from scratch on the embedded demo set, all three modalities).
`paper_<text>_<vision>`: the paper's tower combinations and hyper-parameters."""


@dataclass
class TrainingOptions:
    """Everything a training run reads; saved as `run_config.json` in the output directory.

    The defaults are the `tiny` preset: the offline default run.
    """

    preset: str = TINY
    text_model: str = TINY  # Hub id, local path, or "tiny"
    vision_model: str = TINY  # Hub id, local path, "tiny" or "none" (text-only)
    dataset: str | None = None  # Hub id or local directory built by dataset_script/; None: the embedded demo set
    languages: list[str] = field(default_factory=lambda: ["all"])
    include_translated: bool = False
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    num_epochs: int = 8
    early_stopping_patience: int = 3
    warmup_ratio: float = 0.0
    max_length: int = 64
    freeze_text_model: bool = False
    freeze_vision_model: bool = False
    cache_features: bool = True
    mixed_precision: str = "no"
    seeds: list[int] = field(default_factory=lambda: [42])
    output_dir: str = "outputs/m2sa-demo"
    cache_dir: str = ".cache/m2sa"
    resume_from_checkpoint: str | None = None
    overwrite_output_dir: bool = False
    push_to_hub: str | None = None
    report_to: str | None = None
    max_train_samples: int | None = None
    tiny_vocab_size: int = 4000
    tiny_hidden_size: int = 64
    tiny_num_layers: int = 2

    def run_identity(self):
        """The options that define what a run computes (not where it resumes from or is pushed to)."""
        identity = dataclasses.asdict(self)
        for key in ("resume_from_checkpoint", "overwrite_output_dir", "push_to_hub", "report_to", "output_dir"):
            identity.pop(key)
        return identity

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


FIELD_HELP = {
    "preset": f"named defaults: {', '.join(PRESETS)}",
    "text_model": "text tower: Hub id, local path, or 'tiny' (small tower from scratch)",
    "vision_model": "image tower: Hub id, local path, 'tiny', or 'none' for a text-only model",
    "dataset": "Hub id or local directory of an M2SA-format dataset (default: the embedded demo set)",
    "languages": "configs to train and evaluate on: language codes (de en ...), 'all', or *_mt sets",
    "include_translated": "add the machine-translated *_mt sets of the chosen languages",
    "modalities": "one model per entry: multimodal, text (no image tower), image (texts blanked)",
    "gradient_accumulation_steps": "optimizer step every N batches",
    "early_stopping_patience": "stop after N epochs without a better validation macro-F1",
    "warmup_ratio": "fraction of steps with linear learning-rate warm-up",
    "max_length": "maximum tokens per tweet",
    "freeze_text_model": "do not train the text tower (its features are cached)",
    "freeze_vision_model": "do not train the image tower (its features are cached)",
    "cache_features": "cache features of frozen towers on disk (use --no-cache-features to recompute)",
    "mixed_precision": f"one of {MIXED_PRECISIONS} (bf16 needs a GPU or a CPU with native bf16)",
    "seeds": "one run per seed; results are aggregated as mean ± std",
    "output_dir": "where the model, processor, model card, reports and checkpoints go",
    "cache_dir": "where cached tower features and the generated demo set go",
    "resume_from_checkpoint": "a checkpoint directory, or 'latest' to continue every run from its last checkpoint",
    "overwrite_output_dir": "allow an output directory that holds a different run",
    "push_to_hub": "Hub model repo id to upload the output directory to",
    "report_to": "tensorboard or trackio",
    "max_train_samples": "use only the first N training examples (quick experiments)",
    "tiny_vocab_size": "tokenizer vocabulary of a 'tiny' text tower (trained on the training texts)",
    "tiny_hidden_size": "hidden size of 'tiny' towers",
    "tiny_num_layers": "transformer layers of 'tiny' towers",
}


def _flag_type(option):
    """`int`, `float` or `str` from a field's annotation (`int | None` gives `int`)."""
    kinds = typing.get_args(option.type) or (option.type,)
    return next((kind for kind in (int, float) if kind in kinds), str)


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train an M2SA model. Precedence: defaults (the tiny preset) < --preset < --config YAML < flags.",
    )
    parser.add_argument("--config", type=Path, help="YAML file with any of the options below (underscores)")
    defaults = TrainingOptions()
    for option in dataclasses.fields(TrainingOptions):
        flag = "--" + option.name.replace("_", "-")
        default = getattr(defaults, option.name)
        help_text = f"{FIELD_HELP.get(option.name, option.name.replace('_', ' '))} (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif isinstance(default, list):
            item_type = int if option.name == "seeds" else str
            parser.add_argument(flag, nargs="+", type=item_type, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=_flag_type(option), default=None, help=help_text)
    return parser


def parse_options(argv=None):
    """Options from presets, an optional YAML `--config` and flags; raises ValueError for unknown or bad values."""
    arguments = vars(build_parser().parse_args(argv))
    config_path = arguments.pop("config")
    from_file = {}
    if config_path is not None:
        if not config_path.is_file():
            raise ValueError(f"Config file {str(config_path)!r} does not exist.")
        from_file = yaml.safe_load(config_path.read_text()) or {}
        known = {option.name for option in dataclasses.fields(TrainingOptions)}
        unknown = sorted(set(from_file) - known)
        if unknown:
            raise ValueError(f"Unknown options in {config_path}: {unknown}. Known options: {sorted(known)}.")
    from_flags = {key: value for key, value in arguments.items() if value is not None}
    preset = from_flags.get("preset", from_file.get("preset", TINY))
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    merged = {**PRESETS[preset], **from_file, **from_flags, "preset": preset}
    if merged.get("vision_model") == NO_VISION and "modalities" not in {**from_file, **from_flags}:
        merged["modalities"] = ["text"]  # without an image tower only the text-only model can be trained
    options = TrainingOptions(**merged)
    validate_options(options)
    return options


def validate_options(options):
    unknown_modalities = sorted(set(options.modalities) - set(MODALITIES))
    if unknown_modalities:
        raise ValueError(f"Unknown modalities {unknown_modalities}; choose from {MODALITIES}.")
    if options.mixed_precision not in MIXED_PRECISIONS:
        raise ValueError(f"--mixed-precision must be one of {MIXED_PRECISIONS}, got {options.mixed_precision!r}.")
    if options.vision_model == NO_VISION and set(options.modalities) - {"text"}:
        raise ValueError("--vision-model none trains a text-only model; use --modalities text (or pick an image tower).")
    for name in ("batch_size", "num_epochs", "gradient_accumulation_steps", "max_length"):
        if getattr(options, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}.")
    if options.report_to not in (None, "tensorboard", "trackio"):
        raise ValueError(f"--report-to must be tensorboard or trackio, got {options.report_to!r}.")

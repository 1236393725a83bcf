"""Configuration of the M2SA multimodal (text + image) tweet sentiment model."""

from transformers import AutoConfig, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils import logging

from .errors_m2sa import M2SAError
from .labels_m2sa import LABEL_NAMES

logger = logging.get_logger(__name__)


CLASSIFICATION, REGRESSION = "single_label_classification", "regression"
"""The `problem_type`s M2SA trains (transformers' names): three sentiment classes, or one sentiment score."""
POOLING_CHOICES = ("mean", "first_token", "pooler")
FUSION_CHOICES = ("concat", "gated", "late", "cross_attention")
INFERENCE_BACKENDS = ("auto", "fp32", "bf16", "int8")
"""How the pipeline does a forward pass's arithmetic: the fastest that agrees with fp32 on the machine ("auto"), as
saved ("fp32"), matrix products in bfloat16 ("bf16") or linear layers in int8 ("int8"); see `backends_m2sa`."""

PIPELINE_TASK = "m2sa-sentiment"
CUSTOM_PIPELINES = {
    PIPELINE_TASK: {
        "impl": "pipeline_m2sa.M2SASentimentPipeline",
        "pt": ["AutoModelForSequenceClassification"],
        "tf": [],
        "type": "multimodal",
    }
}
"""The `custom_pipelines` of a saved classifier's `config.json`: `pipeline(model=...)` reads it to load the saved
pipeline code (`impl`: module and class), so a saved classifier needs no task and no M2SA package."""
TRAINING_ONLY_KEYS = ("freeze_text_model", "freeze_vision_model")
"""Training choices (the paper's code passes them to its model) that are no part of a model: given to the config they
are dropped with a warning that says where they belong (freezing is `set_tower_freezing`'s job)."""
TEXT_ONLY_FUSION = "concat"
"""The only fusion of a text-only model (`vision_config=None`): its text features pass through unchanged."""

# Hub checkpoints of dual encoders (CLIP, SigLIP, ...) hold a text and a vision model; M2SA only uses
# the vision half, so their configs are reduced to their `vision_config`.
_DUAL_ENCODER_VISION_KEY = "vision_config"


class TowerConfigs:
    """`M2SAConfig.sub_configs`: on the class, both towers' config slots; on a config, the towers it has. transformers
    4.x treats every entry of a config's `sub_configs` as a config (sets its dtype, diffs it as a dict), which a
    text-only model's `vision_config=None` is not."""

    TOWERS = {"text_config": AutoConfig, "vision_config": AutoConfig}

    def __get__(self, config, owner=None):
        if config is None:
            return dict(self.TOWERS)
        return {key: value for key, value in self.TOWERS.items() if getattr(config, key, None) is not None}


def _tower_config(config, role):
    """Turn a tower config given as a `PretrainedConfig` or a dict (with `model_type`) into a config object."""
    if config is None or isinstance(config, PretrainedConfig):
        tower_config = config
    elif isinstance(config, dict):
        model_type = config.get("model_type")
        if model_type not in CONFIG_MAPPING:
            raise M2SAError(
                f"Unknown {role} tower model_type {model_type!r}. Use a transformers encoder type such as "
                f"'xlm-roberta' or 'bert' for text and 'clip_vision_model', 'dinov2' or 'siglip_vision_model' "
                f"for images, or build the model with `M2SAForSequenceClassification.from_towers(text_id, vision_id)`."
            )
        tower_config = CONFIG_MAPPING[model_type](**{k: v for k, v in config.items() if k != "model_type"})
    else:
        raise TypeError(f"`{role}_config` must be a PretrainedConfig, a dict or None, got {type(config).__name__}.")
    if role == "vision" and tower_config is not None:
        nested = getattr(tower_config, _DUAL_ENCODER_VISION_KEY, None)
        if isinstance(nested, PretrainedConfig):
            tower_config = nested
        if not hasattr(tower_config, "num_channels"):
            raise M2SAError(
                f"The vision tower config has model_type {tower_config.model_type!r}, which is not an image encoder. "
                f"Pass a vision encoder such as CLIP ('clip_vision_model'), DINOv2 ('dinov2') or SigLIP."
            )
    return tower_config


class M2SAConfig(PretrainedConfig):
    r"""
    Configuration of [`M2SAModel`] and [`M2SAForSequenceClassification`]: a text encoder and an optional image
    encoder whose pooled features are concatenated and classified into negative / neutral / positive.

    Args:
        text_config (`PretrainedConfig` or `dict`, *optional*):
            Config of the text tower (any transformers encoder: mBERT, XLM-R, XLMR-SM, ...). `None` gives an
            image-only model.
        vision_config (`PretrainedConfig` or `dict`, *optional*):
            Config of the image tower (CLIP vision, DINOv2, SigLIP vision). A full CLIP/SigLIP config is reduced to
            its vision part. `None` gives a text-only model.
        text_pooling (`str`, *optional*, defaults to `"mean"`):
            How a text is reduced to one vector: `"mean"` (mask-aware mean of the last hidden states),
            `"first_token"` (the `<s>`/`[CLS]` state) or `"pooler"` (the tower's pooler; needs pooler weights, which
            sequence-classification checkpoints such as XLMR-SM do not have).
        vision_pooling (`str`, *optional*, defaults to `"pooler"`):
            Same choices for the image tower; CLIP, DINOv2 and SigLIP vision checkpoints all carry their pooler.
        fusion_type (`str`, *optional*, defaults to `"concat"`):
            How text and image are combined before the classification layer:
            - `"concat"`: the paper's head: pooled text and image features concatenated.
            - `"gated"`: a Gated Multimodal Unit (Arevalo et al., 2017): each modality's pooled features go through
              a tanh projection to `fusion_hidden_size`, and a sigmoid gate computed from both mixes them per
              dimension, so the model can learn how far to trust the image of each tweet.
            - `"late"`: one classification layer per modality; their logits are mixed with two learned weights
              (softmax-normalised). A tweet without an image takes the text layer's logits alone, where the other
              types read the learned "no image" embedding in place of the image features.
            - `"cross_attention"`: the text tower's token states attend to the image tower's patch states
              (`cross_attention_layers` layers), then are mean-pooled. It needs unpooled tower outputs, so it cannot
              run on precomputed `text_embeds` / `image_embeds` (cached features). A tweet without an image attends
              to the learned "no image" embedding only.
            A text-only model (`vision_config=None`) only has `"concat"`.
        fusion_hidden_size (`int`, *optional*):
            Width of the `"gated"` and `"cross_attention"` fusion; defaults to the text tower's hidden size.
        cross_attention_layers (`int`, *optional*, defaults to 1):
            Number of cross-attention layers (attention then feed-forward, each with a residual and LayerNorm).
        cross_attention_heads (`int`, *optional*):
            Attention heads of the cross-attention layers; defaults to the text tower's `num_attention_heads`. Must
            divide `fusion_hidden_size`.
        classifier_dropout (`float`, *optional*, defaults to 0.1):
            Dropout applied to the fused features before the classification layer.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation for the fusion head and the learned "no image" embedding.
        inference_backend (`str`, *optional*, defaults to `"auto"`):
            What the pipeline runs when not told otherwise: `"auto"` (the fastest backend that agrees with fp32 on
            the machine: bf16 on CPUs with AMX, int8 on CPUs with AVX512-VNNI, fp32 on other CPUs and GPUs),
            `"fp32"` (the model as saved, exact), `"bf16"` or `"int8"`.
            Set by `python -m modeling_m2sa.export --backend ...`.
        calibration_temperature (`float`, *optional*):
            The calibration temperature T: the pipeline's probabilities are softmax(logits / T) (sigmoid for
            multi-label). Fitted on the validation split by `train.py` (`--calibrate`, the default) so that the
            probabilities match how often the labels are right; it never changes a label. `None`: the logits' own
            softmax. The model's `logits` are never divided.
        backend_agreement (`dict`, *optional*):
            The agreement record: on how many tweets of a held-out split each low-precision arithmetic the pipeline
            can serve gave the fp32 model's label, as `{"split", "tweets", "agreement": {"bf16", "int8",
            "int8_7bit": share}}`. Measured where the model is made (`train.py`, the grid, `python -m
            modeling_m2sa.export --dataset ...`), in the arithmetic itself whatever kernels that machine has; the
            pipeline's `backend="auto"` serves an arithmetic only where the record says at least 99 % (see
            `backends_m2sa`). `None`: not measured.
        training_languages (`list[str]`, *optional*):
            The languages of the rows the model was trained on, as `train.py` records them: ISO 639-1 codes, and
            `<code>_mt` for machine-translated rows (`de_mt`). `None`: not recorded. The pipeline's `detect_language`
            compares a tweet's language with them (see `language_m2sa`).
    """

    model_type = "m2sa"
    # `Trainer.predict` / `evaluate` gather only the logits, not every batch's tower states.
    keys_to_ignore_at_inference = ["text_model_output", "vision_model_output"]
    sub_configs = TowerConfigs()

    def __init__(
        self,
        text_config=None,
        vision_config=None,
        text_pooling="mean",
        vision_pooling="pooler",
        fusion_type="concat",
        fusion_hidden_size=None,
        cross_attention_layers=1,
        cross_attention_heads=None,
        classifier_dropout=0.1,
        initializer_range=0.02,
        inference_backend="auto",
        calibration_temperature=None,
        training_languages=None,
        backend_agreement=None,
        **kwargs,
    ):
        for name, value, choices in (
            ("text_pooling", text_pooling, POOLING_CHOICES),
            ("vision_pooling", vision_pooling, POOLING_CHOICES),
            ("fusion_type", fusion_type, FUSION_CHOICES),
            ("inference_backend", inference_backend, INFERENCE_BACKENDS),
        ):
            if value not in choices:
                raise M2SAError(f"`{name}` must be one of {choices}, got {value!r}.")
        self.text_config = _tower_config(text_config, "text")
        self.vision_config = _tower_config(vision_config, "vision")
        if self.vision_config is None and fusion_type != TEXT_ONLY_FUSION:
            raise M2SAError(
                f"fusion_type={fusion_type!r} fuses text with images, but this model is text-only (vision_config=None). "
                f"A text-only model uses fusion_type={TEXT_ONLY_FUSION!r} (its text features alone); give it a "
                f"vision tower to use {fusion_type!r}."
            )
        text_hidden_size = getattr(self.text_config, "hidden_size", None)
        self.fusion_hidden_size = fusion_hidden_size or text_hidden_size
        self.cross_attention_heads = cross_attention_heads or getattr(self.text_config, "num_attention_heads", None)
        if cross_attention_layers < 1:
            raise M2SAError(f"`cross_attention_layers` must be at least 1, got {cross_attention_layers}.")
        self.cross_attention_layers = cross_attention_layers
        if fusion_type == "cross_attention" and self.fusion_hidden_size % self.cross_attention_heads:
            raise M2SAError(
                f"`cross_attention_heads` ({self.cross_attention_heads}) must divide `fusion_hidden_size` "
                f"({self.fusion_hidden_size}); pass values where it does."
            )
        self.text_pooling = text_pooling
        self.vision_pooling = vision_pooling
        self.fusion_type = fusion_type
        self.classifier_dropout = classifier_dropout
        self.initializer_range = initializer_range
        self.inference_backend = inference_backend
        if calibration_temperature is not None and not calibration_temperature > 0:
            raise M2SAError(f"`calibration_temperature` must be positive (or None: not calibrated), got "
                            f"{calibration_temperature}.")
        self.calibration_temperature = calibration_temperature
        self.training_languages = None if training_languages is None else list(training_languages)
        self.backend_agreement = backend_agreement
        training_only = [key for key in TRAINING_ONLY_KEYS if kwargs.pop(key, None) is not None]
        if training_only:
            logger.warning_once(
                f"{', '.join(training_only)} is not part of the M2SA config: the model is fully trainable. To train "
                f"with a tower frozen, call model.set_tower_freezing(freeze_text_model=..., freeze_vision_model=...) "
                f"(train.py does this for --freeze-text-model / --freeze-vision-model)."
            )
        kwargs.setdefault("id2label", dict(enumerate(LABEL_NAMES)))
        kwargs.setdefault("label2id", {name: index for index, name in enumerate(LABEL_NAMES)})
        super().__init__(**kwargs)

    @property
    def label_names(self):
        """The class names in label-id order (`id2label[0]`, `id2label[1]`, ...): how a classifier's outputs, a
        results table's probability columns and a dataset's label ids line up."""
        return [self.id2label[index] for index in range(self.num_labels)]

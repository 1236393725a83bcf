"""M2SA: a text tower and an optional image tower, pooled, fused and classified into three sentiment classes.

Tweets without an image are encoded with a learned "no image" embedding in place of the image features, so a
batch can mix tweets with and without images and every tweet gets a prediction.
"""

import copy
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.dynamic_module_utils import HF_MODULES_CACHE, get_cached_module_file, get_relative_import_files
from transformers.modeling_outputs import ModelOutput
from transformers.utils import cached_file

from .configuration_m2sa import CUSTOM_PIPELINES, PIPELINE_TASK, M2SAConfig
from .errors_m2sa import M2SAError
from .saved_folder_m2sa import REEXPORT, auto_map_modules, check_code_files, damaged_safetensors_files, saved_folder

# transformers 4.x (Inference Endpoints' pin) copies into its module cache only the files a remote-code module
# imports directly, then reads every file they import: so each saved file this one needs is imported here by name.
from .labels_m2sa import LABEL_NAMES  # noqa: F401

PIPELINE_FILE = f"{CUSTOM_PIPELINES[PIPELINE_TASK]['impl'].rsplit('.', 1)[0]}.py"
"""The saved pipeline's code, which nothing here imports: copied into every saved classifier's folder with the files
it imports, so that `pipeline(model=...)` loads it."""
ENDPOINT_FILES = {"handler.py": "handler.py", "endpoint_requirements.txt": "requirements.txt"}
"""Inference Endpoints' custom handler and the requirements an endpoint installs at start: {file of this package:
name in every saved classifier's folder}."""
AUTO_MAP = {
    "AutoConfig": "configuration_m2sa.M2SAConfig",
    "AutoModel": "modeling_m2sa.M2SAModel",
    "AutoModelForSequenceClassification": "modeling_m2sa.M2SAForSequenceClassification",
}


def _nested_to_tuple(output):
    return tuple(value.to_tuple() if isinstance(value, ModelOutput) else value for value in output.values())


@dataclass
class M2SAModelOutput(ModelOutput):
    r"""
    fused_embeds (`torch.FloatTensor` of shape `(batch, fused_dim)`):
        The fused tweet representation: `text_hidden + vision_hidden` wide for `"concat"` and `"late"` fusion (the
        concatenation), `fusion_hidden_size` for `"gated"` and `"cross_attention"`, `text_hidden` for a text-only
        model.
    text_embeds (`torch.FloatTensor` of shape `(batch, text_hidden)`):
        Pooled text features.
    image_embeds (`torch.FloatTensor` of shape `(batch, vision_hidden)`, *optional*):
        Pooled image features, holding the learned "no image" embedding where `has_image` is False.
        `None` for a text-only model.
    text_model_output (`BaseModelOutputWithPooling`, *optional*):
        The text tower's output (with `hidden_states` / `attentions` when asked for); `None` when `text_embeds` was
        passed in.
    vision_model_output (`BaseModelOutputWithPooling`, *optional*):
        The image tower's output for the tweets that have an image (rows where `has_image` is True, in order);
        `None` when no tweet has an image or `image_embeds` was passed in.
    has_image (`torch.BoolTensor` of shape `(batch,)`, *optional*):
        Which tweets' images were used (the given `has_image`, or its default); `None` for a text-only model.
    """

    fused_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_model_output: ModelOutput | None = None
    vision_model_output: ModelOutput | None = None
    has_image: torch.BoolTensor | None = None

    def to_tuple(self):
        return _nested_to_tuple(self)


@dataclass
class M2SASequenceClassifierOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*): the loss of `config.problem_type`, when `labels` were given.
    logits (`torch.FloatTensor` of shape `(batch, num_labels)`): classification scores (before softmax).
    text_model_output, vision_model_output: the towers' outputs, as in [`M2SAModelOutput`] (the pooled and fused
        features are on `model.m2sa(...)`'s output).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    text_model_output: ModelOutput | None = None
    vision_model_output: ModelOutput | None = None

    def to_tuple(self):
        return _nested_to_tuple(self)


def masked_mean(states, attention_mask):
    """Mean over the sequence of `states` `(batch, seq_len, hidden)`, counting only positions where the mask is 1."""
    if attention_mask is None:
        return states.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def pool_tower_output(tower_output, pooling, attention_mask=None):
    """Reduce a tower's output to one vector per example: `(batch, hidden)`."""
    if pooling == "pooler":
        if getattr(tower_output, "pooler_output", None) is None:
            raise M2SAError(
                "pooling='pooler' needs a tower that returns `pooler_output`; this one does not. "
                "Use 'mean' or 'first_token' pooling in M2SAConfig."
            )
        return tower_output.pooler_output
    hidden_states = tower_output.last_hidden_state
    if pooling == "first_token":
        return hidden_states[:, 0]
    return masked_mean(hidden_states, attention_mask)


def copy_tower_weights(target_tower, source_tower, name_or_path):
    """Copy a pretrained tower's weights into the tower M2SA built from the same config.

    Weights the target does not have (a pooler M2SA does not use) are ignored; weights the source lacks are an error.
    """
    missing, _unused = target_tower.load_state_dict(source_tower.state_dict(), strict=False)
    if missing:
        raise M2SAError(
            f"The checkpoint {name_or_path!r} lacks weights the tower needs ({', '.join(missing[:5])}...). "
            f"Check that it is a {target_tower.config.model_type!r} encoder checkpoint."
        )


class M2SAGatedFusion(nn.Module):
    """Gated Multimodal Unit (Arevalo et al., 2017): `z * tanh(W_t t) + (1 - z) * tanh(W_v v)`, with the gate
    `z = sigmoid(W_z [t; v])` computed per dimension from both modalities."""

    def __init__(self, config):
        super().__init__()
        text_dim, image_dim = config.text_config.hidden_size, config.vision_config.hidden_size
        self.text_projection = nn.Linear(text_dim, config.fusion_hidden_size)
        self.image_projection = nn.Linear(image_dim, config.fusion_hidden_size)
        self.gate = nn.Linear(text_dim + image_dim, config.fusion_hidden_size)

    def forward(self, text_embeds, image_embeds):
        gate = torch.sigmoid(self.gate(torch.cat([text_embeds, image_embeds], dim=-1)))
        return gate * torch.tanh(self.text_projection(text_embeds)) + (1 - gate) * torch.tanh(
            self.image_projection(image_embeds)
        )


class M2SACrossAttentionLayer(nn.Module):
    """Text states attend to image states (multi-head attention, residual, LayerNorm), then a feed-forward block
    (residual, LayerNorm), as in a post-LN transformer layer without self-attention."""

    def __init__(self, hidden_size, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.attention_output = nn.Linear(hidden_size, hidden_size)
        self.attention_LayerNorm = nn.LayerNorm(hidden_size)
        self.intermediate = nn.Linear(hidden_size, 4 * hidden_size)
        self.output = nn.Linear(4 * hidden_size, hidden_size)
        self.output_LayerNorm = nn.LayerNorm(hidden_size)

    def _heads(self, states):
        batch, length, hidden = states.shape
        return states.view(batch, length, self.num_heads, hidden // self.num_heads).transpose(1, 2)

    def forward(self, text_states, image_states, image_mask):
        """`text_states` `(batch, text_len, hidden)`, `image_states` `(batch, image_len, hidden)`, `image_mask`
        `(batch, image_len)` True where a text token may attend."""
        attended = nn.functional.scaled_dot_product_attention(
            self._heads(self.query(text_states)), self._heads(self.key(image_states)),
            self._heads(self.value(image_states)), attn_mask=image_mask[:, None, None, :],
        )
        attended = attended.transpose(1, 2).reshape(text_states.shape)
        states = self.attention_LayerNorm(text_states + self.attention_output(attended))
        feed_forward = self.output(nn.functional.gelu(self.intermediate(states)))
        return self.output_LayerNorm(states + feed_forward)


class M2SACrossAttentionFusion(nn.Module):
    """Text token states, projected to `fusion_hidden_size`, attend to the image's patch states (same width) and to
    one extra "no image" state (the projected learned embedding); then a mask-aware mean over the text tokens.

    A tweet without an image can only attend to the "no image" state. Memory beyond the towers: the projected patch
    states `(batch, num_patches + 1, fusion_hidden_size)` and attention weights
    `(batch, heads, text_len, num_patches + 1)` per layer.
    """

    def __init__(self, config):
        super().__init__()
        hidden = config.fusion_hidden_size
        self.text_projection = nn.Linear(config.text_config.hidden_size, hidden)
        self.image_projection = nn.Linear(config.vision_config.hidden_size, hidden)
        self.layers = nn.ModuleList(
            M2SACrossAttentionLayer(hidden, config.cross_attention_heads) for _ in range(config.cross_attention_layers)
        )

    def forward(self, text_states, attention_mask, patch_states, has_image, missing_image_embedding):
        """`text_states` `(batch, text_len, text_hidden)`; `patch_states` `(num_images, num_patches, vision_hidden)`
        for the rows where `has_image` is True (or None when no tweet has an image). Returns `(batch, hidden)`."""
        batch = text_states.shape[0]
        states = self.text_projection(text_states)
        keys = self.image_projection(missing_image_embedding.to(states.dtype)).expand(batch, 1, -1)
        mask = torch.ones(batch, 1, dtype=torch.bool, device=states.device)
        if patch_states is not None:
            projected = self.image_projection(patch_states.to(states.dtype))
            rows = has_image.nonzero(as_tuple=True)[0]
            scattered = projected.new_zeros(batch, *projected.shape[1:]).index_copy(0, rows, projected)
            keys = torch.cat([keys, scattered], dim=1)
            mask = torch.cat([mask, has_image[:, None].expand(batch, projected.shape[1])], dim=1)
        for layer in self.layers:
            states = layer(states, keys, mask)
        return masked_mean(states, attention_mask)


FUSION_MODULES = {"gated": M2SAGatedFusion, "cross_attention": M2SACrossAttentionFusion}


class M2SAPreTrainedModel(PreTrainedModel):
    config_class = M2SAConfig
    config: M2SAConfig
    base_model_prefix = "m2sa"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    # forward takes no loss kwargs (e.g. Trainer's `num_items_in_batch`): it rejects arguments it does not use.
    accepts_loss_kwargs = False
    _supports_sdpa = True

    def _fix_state_dict_key_on_load(self, key):
        """transformers 4.x only (5 does not call it): a checkpoint key as this transformers names the weight.
        transformers 4.x's CLIP and SigLIP vision models hold their encoder one level down, as `vision_model.`, a
        level that transformers 5, which saves M2SA models, no longer has."""
        key, renamed = PreTrainedModel._fix_state_dict_key_on_load(key)
        vision_tower = getattr(self.base_model, "vision_model", None)
        if isinstance(getattr(vision_tower, "vision_model", None), nn.Module):
            # `m2sa.vision_model.embeddings...` is their `m2sa.vision_model.vision_model.embeddings...`
            key, nested = re.subn(rf"^((?:{self.base_model_prefix}\.)?vision_model\.)(?!vision_model\.)",
                                  r"\1vision_model.", key)
            renamed = renamed or bool(nested)
        return key, renamed

    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, M2SAModel) and module.missing_image_embedding is not None:
            nn.init.normal_(module.missing_image_embedding, mean=0.0, std=std)
        elif isinstance(module, M2SAClassificationHead):
            nn.init.normal_(module.classifier.weight, mean=0.0, std=std)
            nn.init.zeros_(module.classifier.bias)
        elif isinstance(module, M2SALateFusionHead):
            nn.init.zeros_(module.modality_weights)  # equal trust in text and image at the start

    @classmethod
    def from_towers(cls, text_model_name_or_path, vision_model_name_or_path=None, **config_kwargs):
        """Build an M2SA model around pretrained towers, each a Hub id or a local directory.

        `vision_model_name_or_path=None` builds a text-only model. Full CLIP/SigLIP checkpoints contribute their vision
        encoder. The fusion head and the "no image" embedding start from random weights; `config_kwargs` go to
        [`M2SAConfig`] (pooling, dropout, freezing).
        """
        text_tower = AutoModel.from_pretrained(text_model_name_or_path)
        vision_tower = None
        if vision_model_name_or_path is not None:
            vision_config = M2SAConfig(
                text_config=text_tower.config, vision_config=AutoConfig.from_pretrained(vision_model_name_or_path)
            ).vision_config
            vision_tower = AutoModel.from_pretrained(vision_model_name_or_path, config=vision_config)
        config = M2SAConfig(
            text_config=text_tower.config,
            vision_config=vision_tower.config if vision_tower is not None else None,
            **config_kwargs,
        )
        model = cls(config)
        copy_tower_weights(model.base_model.text_model, text_tower, text_model_name_or_path)
        if vision_tower is not None:
            copy_tower_weights(model.base_model.vision_model, vision_tower, vision_model_name_or_path)
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        # A damaged local folder fails with the files named and what to do, not with a bare library error.
        folder = saved_folder(pretrained_model_name_or_path, kwargs.get("subfolder"))
        if folder is not None:
            check_code_files(folder, auto_map_modules(folder / "config.json"))
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except Exception as error:
            damaged = damaged_safetensors_files(folder) if folder is not None else {}
            if not damaged:
                raise
            files = "; ".join(f"{file.name} ({reason})" for file, reason in damaged.items())
            raise OSError(f"The model folder {folder} is damaged: truncated or corrupt weights in {files}. "
                          f"{REEXPORT}") from error
        return loaded

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Both Auto classes point at this code, so a saved classifier also loads as the base model with AutoModel.
        self.config.auto_map = dict(AUTO_MAP)
        # A saved classifier names its pipeline, so `pipeline(model=...)` needs no task and no M2SA package.
        classifier = isinstance(self, M2SAForSequenceClassification)
        self.config.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES) if classifier else {}
        super().save_pretrained(save_directory, *args, **kwargs)
        if classifier:
            for source, name in self._files_saved_with_a_classifier().items():
                if source.resolve() != (Path(save_directory) / name).resolve():
                    shutil.copyfile(source, Path(save_directory) / name)

    def _files_saved_with_a_classifier(self):
        """{file: its name in the saved folder} for the pipeline's code (with every file it imports), the endpoint
        handler and its requirements. They are this package's files; a model loaded with `trust_remote_code` runs from
        transformers' module cache, which may lack them: they are then read where the model was loaded from."""
        here = Path(__file__).parent
        pipeline_file = here / PIPELINE_FILE
        if not pipeline_file.is_file():
            pipeline_file = Path(HF_MODULES_CACHE) / get_cached_module_file(self.name_or_path, PIPELINE_FILE)
        files = {Path(file): Path(file).name for file in [pipeline_file, *get_relative_import_files(pipeline_file)]}
        for package_name, saved_name in ENDPOINT_FILES.items():
            source = here / package_name
            if not source.is_file():  # a model saved before it carried this file has none to pass on
                source = cached_file(self.name_or_path, saved_name, _raise_exceptions_for_missing_entries=False)
            if source is not None:
                files[Path(source)] = saved_name
        return files


class M2SAModel(M2SAPreTrainedModel):
    """The two towers and the fusion: returns the fused tweet representation (no classification head)."""

    def __init__(self, config: M2SAConfig):
        super().__init__(config)
        self.text_model = AutoModel.from_config(config.text_config)
        if config.text_pooling != "pooler" and getattr(self.text_model, "pooler", None) is not None:
            # An unused pooler would get no gradient (which stalls DDP) and XLMR-SM checkpoints have no pooler weights.
            self.text_model.pooler = None
        if config.vision_config is None:
            self.vision_model = None
            self.missing_image_embedding = None
        else:
            self.vision_model = AutoModel.from_config(config.vision_config)
            self.missing_image_embedding = nn.Parameter(torch.zeros(config.vision_config.hidden_size))
        fusion_module = FUSION_MODULES.get(config.fusion_type) if config.vision_config is not None else None
        self.fusion = fusion_module(config) if fusion_module is not None else None
        self.frozen_towers = frozenset()
        self.post_init()

    def set_tower_freezing(self, freeze_text_model=None, freeze_vision_model=None):
        """Freeze or unfreeze the towers for training; `None` keeps a tower as it is.

        A frozen tower gets no gradients and stays in eval mode (no dropout), so its features are deterministic and
        can be cached. Freezing is a training choice, not part of the model: it is not saved, and a model loaded
        with `from_pretrained` is fully trainable.
        """
        frozen = set(self.frozen_towers)
        for tower, freeze in (("text", freeze_text_model), ("vision", freeze_vision_model)):
            if freeze is not None:
                (frozen.add if freeze else frozen.discard)(tower)
        if self.vision_model is None:
            frozen.discard("vision")
        self.frozen_towers = frozenset(frozen)
        self.text_model.requires_grad_("text" not in frozen)
        if self.vision_model is not None:
            self.vision_model.requires_grad_("vision" not in frozen)
        self.train(self.training)

    def train(self, mode=True):
        super().train(mode)
        for tower in getattr(self, "frozen_towers", ()):
            getattr(self, f"{tower}_model").eval()
        return self

    def get_input_embeddings(self):
        """The text tower's token embeddings (what `resize_token_embeddings` resizes)."""
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.text_model.set_input_embeddings(value)

    def _run_text_tower(self, input_ids, attention_mask=None, token_type_ids=None, **tower_options):
        tower_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            tower_inputs["token_type_ids"] = token_type_ids
        tower_output = self.text_model(**tower_inputs, **tower_options, return_dict=True)
        return pool_tower_output(tower_output, self.config.text_pooling, attention_mask), tower_output

    def _run_vision_tower(self, pixel_values, **tower_options):
        if self.vision_model is None:
            raise M2SAError("This M2SA model is text-only (vision_config=None); it cannot encode images.",
                            code="text_only_model")
        tower_output = self.vision_model(pixel_values=pixel_values, **tower_options, return_dict=True)
        return pool_tower_output(tower_output, self.config.vision_pooling), tower_output

    def get_text_features(self, input_ids, attention_mask=None, token_type_ids=None):
        """Pooled text features `(batch, text_hidden)` from `input_ids` `(batch, seq_len)`."""
        return self._run_text_tower(input_ids, attention_mask, token_type_ids)[0]

    def get_image_features(self, pixel_values):
        """Pooled image features `(num_images, vision_hidden)` from `pixel_values` `(num_images, 3, H, W)`."""
        return self._run_vision_tower(pixel_values)[0]

    def _image_embeds_with_missing(self, batch_size, has_image, pixel_values, image_embeds, dtype, device,
                                   tower_options):
        """Pooled image features for the whole batch (the learned "no image" embedding where `has_image` is False)
        and the image tower's output (None when the tower did not run)."""
        missing = self.missing_image_embedding.to(device=device, dtype=dtype).expand(batch_size, -1)
        if not has_image.any():
            return missing, None
        tower_output = None
        if image_embeds is None:
            if pixel_values is None:
                raise M2SAError("`has_image` marks images but neither `pixel_values` nor `image_embeds` was given.")
            present, tower_output = self._run_vision_tower(pixel_values[has_image], **tower_options)
        else:
            present = image_embeds[has_image]
        present = present.to(dtype)
        scattered = present.new_zeros(batch_size, present.shape[-1]).index_copy(
            0, has_image.nonzero(as_tuple=True)[0], present
        )
        return torch.where(has_image.unsqueeze(-1), scattered, missing), tower_output

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        pixel_values=None,
        has_image=None,
        text_embeds=None,
        image_embeds=None,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=None,
    ):
        r"""
        input_ids (`torch.LongTensor` of shape `(batch, seq_len)`): token ids of the tweets.
        attention_mask (`torch.LongTensor` of shape `(batch, seq_len)`): 1 for tokens, 0 for padding.
        pixel_values (`torch.FloatTensor` of shape `(batch, 3, H, W)`): images, one row per tweet; rows where
            `has_image` is False are ignored (the processor fills them with zeros).
        has_image (`torch.BoolTensor` of shape `(batch,)`): which tweets have an image. Defaults to all True when
            `pixel_values` or `image_embeds` is given, else all False.
        text_embeds (`torch.FloatTensor` of shape `(batch, text_hidden)`): precomputed `get_text_features` output,
            used instead of running the text tower.
        image_embeds (`torch.FloatTensor` of shape `(batch, vision_hidden)`): precomputed `get_image_features`
            output, one row per tweet, used instead of running the image tower.
        output_hidden_states, output_attentions (`bool`): passed to the towers; their outputs are returned as
            `text_model_output` and `vision_model_output`.
        return_dict (`bool`): False returns a tuple (nested tower outputs as tuples), as transformers models do.
        """
        if self.config.fusion_type == "cross_attention" and (text_embeds is not None or image_embeds is not None):
            raise M2SAError(
                "fusion_type='cross_attention' reads the towers' token and patch states, so it cannot use precomputed "
                "`text_embeds` / `image_embeds` (cached features); pass `input_ids` and `pixel_values` instead."
            )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        tower_options = {
            name: value
            for name, value in (("output_hidden_states", output_hidden_states), ("output_attentions", output_attentions))
            if value is not None
        }
        text_model_output = None
        if text_embeds is None:
            if input_ids is None:
                raise M2SAError("Pass `input_ids` (from M2SAProcessor) or precomputed `text_embeds`.")
            text_embeds, text_model_output = self._run_text_tower(
                input_ids, attention_mask, token_type_ids, **tower_options
            )
        if self.vision_model is None:
            if pixel_values is not None or image_embeds is not None or (has_image is not None and has_image.any()):
                raise M2SAError(
                    "This M2SA model is text-only (vision_config=None) and cannot use images; pass text only, "
                    "or train a model with a vision tower.", code="text_only_model"
                )
            output = M2SAModelOutput(fused_embeds=text_embeds, text_embeds=text_embeds,
                                     text_model_output=text_model_output)
            return output if return_dict else output.to_tuple()

        batch_size = text_embeds.shape[0]
        if has_image is None:
            has_image_value = pixel_values is not None or image_embeds is not None
            has_image = torch.full((batch_size,), has_image_value, dtype=torch.bool, device=text_embeds.device)
        has_image = has_image.to(torch.bool)
        image_embeds, vision_model_output = self._image_embeds_with_missing(
            batch_size, has_image, pixel_values, image_embeds, text_embeds.dtype, text_embeds.device, tower_options,
        )
        if self.config.fusion_type == "cross_attention":
            fused_embeds = self.fusion(
                text_model_output.last_hidden_state, attention_mask,
                vision_model_output.last_hidden_state if vision_model_output is not None else None,
                has_image, self.missing_image_embedding,
            )
        elif self.config.fusion_type == "gated":
            fused_embeds = self.fusion(text_embeds, image_embeds)
        else:  # "concat" and "late" (whose head reads the two halves separately)
            fused_embeds = torch.cat([text_embeds, image_embeds], dim=-1)
        output = M2SAModelOutput(
            fused_embeds=fused_embeds,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_model_output,
            vision_model_output=vision_model_output,
            has_image=has_image,
        )
        return output if return_dict else output.to_tuple()

    @property
    def fused_dim(self):
        text_dim = self.config.text_config.hidden_size
        if self.config.vision_config is None:
            return text_dim
        if self.config.fusion_type in FUSION_MODULES:
            return self.config.fusion_hidden_size
        return text_dim + self.config.vision_config.hidden_size


class M2SAClassificationHead(nn.Module):
    """The paper's head: dropout on the fused features, then a linear layer to the classes."""

    def __init__(self, config, fused_dim):
        super().__init__()
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(fused_dim, config.num_labels)

    def forward(self, fused_embeds):
        return self.classifier(self.dropout(fused_embeds))


class M2SALateFusionHead(nn.Module):
    """Late fusion: a classification layer per modality; the logits are mixed with two learned, softmax-normalised
    weights. A tweet without an image takes the text layer's logits alone."""

    def __init__(self, config):
        super().__init__()
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.text_classifier = nn.Linear(config.text_config.hidden_size, config.num_labels)
        self.image_classifier = nn.Linear(config.vision_config.hidden_size, config.num_labels)
        self.modality_weights = nn.Parameter(torch.zeros(2))

    def forward(self, text_embeds, image_embeds, has_image):
        text_logits = self.text_classifier(self.dropout(text_embeds))
        image_logits = self.image_classifier(self.dropout(image_embeds))
        text_weight, image_weight = self.modality_weights.softmax(dim=0)
        mixed = text_weight * text_logits + image_weight * image_logits
        return torch.where(has_image.unsqueeze(-1), mixed, text_logits)


class M2SAForSequenceClassification(M2SAPreTrainedModel):
    """M2SA with its classification head: logits over negative / neutral / positive."""

    def __init__(self, config: M2SAConfig):
        super().__init__(config)
        self.m2sa = M2SAModel(config)
        if config.fusion_type == "late" and config.vision_config is not None:
            self.head = M2SALateFusionHead(config)
        else:
            self.head = M2SAClassificationHead(config, self.m2sa.fused_dim)
        self.post_init()

    def set_tower_freezing(self, freeze_text_model=None, freeze_vision_model=None):
        """See [`M2SAModel.set_tower_freezing`]."""
        self.m2sa.set_tower_freezing(freeze_text_model, freeze_vision_model)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        pixel_values=None,
        has_image=None,
        text_embeds=None,
        image_embeds=None,
        labels=None,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=None,
    ):
        r"""
        Inputs as in [`M2SAModel.forward`]. `labels` adds the loss to the output, chosen by `config.problem_type` as
        transformers' `*ForSequenceClassification` models choose it: `"single_label_classification"` (class ids
        `(batch,)`, cross-entropy), `"multi_label_classification"` (`(batch, num_labels)` floats in [0, 1], binary
        cross-entropy) or `"regression"` (`(batch,)` floats with `num_labels=1`, mean squared error); when unset, it
        is inferred from `num_labels` and the labels' dtype.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.m2sa(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            pixel_values=pixel_values,
            has_image=has_image,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        if isinstance(self.head, M2SALateFusionHead):
            logits = self.head(outputs.text_embeds, outputs.image_embeds, outputs.has_image)
        else:
            logits = self.head(outputs.fused_embeds)
        loss = None
        if labels is not None:  # as every `*ForSequenceClassification`: the loss follows `config.problem_type`
            loss = self.loss_function(labels=labels, pooled_logits=logits.float(), config=self.config)
        output = M2SASequenceClassifierOutput(loss=loss, logits=logits, text_model_output=outputs.text_model_output,
                                              vision_model_output=outputs.vision_model_output)
        return output if return_dict else output.to_tuple()

"""Why a tweet got its label: Integrated Gradients (Captum) on the text tower's token embeddings and on the image
tower's patch embeddings, for the predicted label's logit.

For each tweet, one Integrated Gradients run moves from a baseline to the tweet along a straight line, in `n_steps`
steps (`internal_batch_size` of them at a time):
- text: every word piece's embedding from the mask token's (or, without one, the unknown token's) embedding to its
  own (the special tokens, such as `<s>` and `</s>`, stay as they are, so they get no attribution);
- image: the patch embedding (the output of the image tower's first convolution) from that of an all-zero
  `pixel_values` (the image processor's mean colour) to the image's own.
Attributions are signed (positive: towards the predicted label) and, by Integrated Gradients' completeness, sum to
the logit's change from the baseline to the tweet, up to the integral's approximation error (`convergence_delta`).

Each result says:
- `words`: the tweet's whitespace-separated words with the summed attributions of their word pieces (summing to
  `text_attribution`; pieces cut off by truncation are not in the model's input and count nothing);
- `image_map`: the attribution of each image patch (a `(rows, columns)` grid over the image as the model sees it,
  resized and center-cropped by the image processor), or None for a tweet without a usable image;
- `text_attribution`, `image_attribution`, `logit_change` (the logit minus the baseline's) and
  `modality_shares`: the text's and the image's shares of the attribution, |text| / (|text| + |image|) and the
  rest (a tweet without an image is 100 % text).

Captum is needed only when explanations are asked for (`pip install captum`).
"""

import warnings

import torch
from torch import nn

from .errors_m2sa import M2SAError

DEFAULT_N_STEPS = 64
"""Steps of the integral: enough for attributions within 5 % of the logit's change on the models tested (32 left
15 % on tweets with an image)."""


def load_layer_integrated_gradients():
    try:
        from captum.attr import LayerIntegratedGradients
    except ImportError as error:
        raise M2SAError("Explanations use Captum's Integrated Gradients: `pip install captum`, then call again.",
                        code="missing_dependency") from error
    return LayerIntegratedGradients


def baseline_token_id(tokenizer):
    """The token every word piece starts from: the mask token, else the unknown token. Not padding: XLM-R-style
    towers give padding tokens another position embedding, a change the token embeddings' attributions would miss."""
    for token_id in (tokenizer.mask_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return token_id
    raise M2SAError("The tokenizer has no mask, unknown or padding token to explain from.", code="explanation_baseline")


def patch_embedding_layer(model):
    """The image tower's first convolution (the patch embedding of ViT-style towers), or None without a tower."""
    vision_model = getattr(model.base_model, "vision_model", None)
    if vision_model is None:
        return None
    return next((module for module in vision_model.modules() if isinstance(module, nn.Conv2d)), None)


def explain_tweet(model, tokenizer, text, inputs, target, n_steps=DEFAULT_N_STEPS, internal_batch_size=None):
    """The explanation of one tweet (see the module docstring). `inputs` are its model inputs, batch of one, without
    padding; `target` the label id to explain."""
    layer_integrated_gradients = load_layer_integrated_gradients()
    input_ids = inputs["input_ids"]
    special = torch.tensor(tokenizer.get_special_tokens_mask(input_ids[0].tolist(), already_has_special_tokens=True),
                           dtype=torch.bool, device=input_ids.device)
    baseline_ids = torch.where(special, input_ids, torch.full_like(input_ids, baseline_token_id(tokenizer)))
    with_image = bool(inputs.get("has_image") is not None and inputs["has_image"].any())
    image_layer = patch_embedding_layer(model) if with_image else None
    extra = {key: value for key, value in inputs.items() if key not in ("input_ids", "pixel_values")}

    def logits(input_ids, pixel_values=None):
        batch = input_ids.shape[0]
        expanded = {key: value.expand(batch, *value.shape[1:]) for key, value in extra.items()}
        if pixel_values is not None:
            expanded["pixel_values"] = pixel_values
        return model(input_ids=input_ids, **expanded).logits

    layers = [model.get_input_embeddings()] + ([image_layer] if image_layer is not None else [])
    with warnings.catch_warnings():  # Captum warns for every pair of layers; the two towers' layers are independent
        warnings.filterwarnings("ignore", message="Multiple layers provided")
        explainer = layer_integrated_gradients(logits, layers if len(layers) > 1 else layers[0])
    explained = (input_ids, inputs["pixel_values"]) if image_layer is not None else input_ids
    baselines = (baseline_ids, torch.zeros_like(inputs["pixel_values"])) if image_layer is not None else baseline_ids
    with torch.enable_grad():
        attributions, delta = explainer.attribute(explained, baselines=baselines, target=target, n_steps=n_steps,
                                                  internal_batch_size=internal_batch_size,
                                                  return_convergence_delta=True)
    attributions = attributions if isinstance(attributions, (list, tuple)) else [attributions]
    token_attributions = attributions[0].detach()[0].sum(dim=-1).float()
    image_map = attributions[1].detach()[0].sum(dim=0).float() if image_layer is not None else None
    text_total = float(token_attributions.sum())
    image_total = float(image_map.sum()) if image_map is not None else 0.0
    magnitude = abs(text_total) + abs(image_total)
    text_share = abs(text_total) / magnitude if magnitude else 1.0
    return {
        "words": word_attributions(tokenizer, text, input_ids[0].tolist(), token_attributions.tolist()),
        "image_map": image_map.tolist() if image_map is not None else None,
        "text_attribution": text_total,
        "image_attribution": image_total,
        "logit_change": text_total + image_total - float(delta.reshape(-1)[0]),  # Captum: delta = sum - change
        "convergence_delta": float(delta.reshape(-1)[0]),
        "modality_shares": {"text": text_share, "image": 1.0 - text_share},
    }


def word_attributions(tokenizer, text, input_ids, token_attributions):
    """[(word, attribution)] for the whitespace-separated words of `text`: each word piece's attribution goes to the
    word its first character is in (special tokens have none)."""
    words, position = [], 0
    for word in text.split():
        start = text.index(word, position)
        words.append([word, start, start + len(word), 0.0])
        position = start + len(word)
    encoded = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=len(input_ids))
    if encoded["input_ids"] != input_ids:  # the model read other pieces than a plain tokenization gives
        raise M2SAError("The tweet's word pieces could not be matched to its words; explain it without custom "
                        "tokenizer arguments.", code="explanation_mismatch")
    for (start, end), attribution in zip(encoded["offset_mapping"], token_attributions):
        if end <= start:
            continue
        word = next((word for word in words if word[1] <= start < word[2]), None)
        if word is None:  # a piece of whitespace (e.g. SentencePiece's "▁" on its own): the next word's
            word = next((word for word in words if word[1] >= start), words[-1] if words else None)
        if word is not None:
            word[3] += attribution
    return [(word, attribution) for word, _, _, attribution in words]

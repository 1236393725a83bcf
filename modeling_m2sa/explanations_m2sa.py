"""Why a tweet got its label: Integrated Gradients (Captum) on the text tower's token embeddings and on the image
tower's patch embeddings, for the predicted label's logit.

For each tweet, one Integrated Gradients run moves the outputs of two layers from a baseline to the tweet's own along
a straight line, in `n_steps` steps (`internal_batch_size` of them at a time), with everything else (token positions,
attention mask) as in the tweet:
- text: every word piece's token embedding (the text tower's input embedding layer) from zero, the embedding of
  nothing, to its own (the special tokens, such as `<s>` and `</s>`, keep theirs, so they get no attribution);
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

from contextlib import contextmanager

import torch
from torch import nn

from .errors_m2sa import M2SAError

DEFAULT_N_STEPS = 64
"""Steps of the integral: enough for attributions within 5 % of the logit's change on the models tested (32 left
15 % on tweets with an image)."""


def load_integrated_gradients():
    try:
        from captum.attr import IntegratedGradients
    except ImportError as error:
        raise M2SAError("Explanations use Captum's Integrated Gradients: `pip install captum`, then call again.",
                        code="missing_dependency") from error
    return IntegratedGradients


def patch_embedding_layer(model):
    """The image tower's first convolution (the patch embedding of ViT-style towers), or None without a tower."""
    vision_model = getattr(model.base_model, "vision_model", None)
    if vision_model is None:
        return None
    return next((module for module in vision_model.modules() if isinstance(module, nn.Conv2d)), None)


@contextmanager
def layer_outputs_replaced(replacements):
    """Run the block with each {layer: tensor} layer's output replaced by the tensor."""
    handles = [layer.register_forward_hook(lambda module, inputs, output, value=value: value)
               for layer, value in replacements.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def explain_tweet(model, tokenizer, text, inputs, target, n_steps=DEFAULT_N_STEPS, internal_batch_size=None):
    """The explanation of one tweet (see the module docstring). `inputs` are its model inputs, batch of one, without
    padding; `target` the label id to explain."""
    integrated_gradients = load_integrated_gradients()
    input_ids = inputs["input_ids"]
    word_layer = model.get_input_embeddings()
    image_layer = patch_embedding_layer(model) if inputs.get("has_image") is not None and inputs["has_image"].any() \
        else None
    special = torch.tensor(tokenizer.get_special_tokens_mask(input_ids[0].tolist(), already_has_special_tokens=True),
                           dtype=torch.bool, device=input_ids.device)
    with torch.no_grad():
        word_embeds = word_layer(input_ids)
        explained, baselines = [word_embeds], [torch.where(special[None, :, None], word_embeds, 0.0)]
        if image_layer is not None:
            explained.append(image_layer(inputs["pixel_values"]))
            baselines.append(image_layer(torch.zeros_like(inputs["pixel_values"])))
    layers = [word_layer, image_layer][: len(explained)]
    other_inputs = {key: value for key, value in inputs.items() if key != "input_ids"}

    def logits(*layer_values):
        batch = layer_values[0].shape[0]
        expanded = {key: value.expand(batch, *value.shape[1:]) for key, value in other_inputs.items()}
        with layer_outputs_replaced(dict(zip(layers, layer_values))):
            return model(input_ids=input_ids.expand(batch, -1), **expanded).logits

    with torch.enable_grad():
        attributions, delta = integrated_gradients(logits).attribute(
            tuple(explained), baselines=tuple(baselines), target=target, n_steps=n_steps,
            internal_batch_size=internal_batch_size, return_convergence_delta=True)
    token_attributions = attributions[0].detach()[0].sum(dim=-1).float()
    image_map = attributions[1].detach()[0].sum(dim=0).float() if image_layer is not None else None
    text_total = float(token_attributions.sum())
    image_total = float(image_map.sum()) if image_map is not None else 0.0
    delta = float(delta.reshape(-1)[0])  # Captum: the attributions' sum minus the logit's change
    magnitude = abs(text_total) + abs(image_total)
    text_share = abs(text_total) / magnitude if magnitude else 1.0
    return {
        "words": word_attributions(tokenizer, text, input_ids[0].tolist(), token_attributions.tolist()),
        "image_map": image_map.tolist() if image_map is not None else None,
        "text_attribution": text_total,
        "image_attribution": image_total,
        "logit_change": text_total + image_total - delta,
        "convergence_delta": delta,
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

"""Features of frozen towers, computed once and cached on disk.

The cache key covers the tower (its config and weights), the dataset split (its `datasets` fingerprint), the
preprocessing (processor settings) and whether images are read, so a change to any of them computes fresh features.
"""

import hashlib
import json
from pathlib import Path

import torch

from m2sa_files.atomic import atomic_file

from .data import IndexedRows, TweetCollator, model_inputs_and_image_errors


def tower_fingerprint(tower):
    """A digest of a tower's config and weights."""
    digest = hashlib.sha256(tower.config.to_json_string().encode())
    for name, tensor in sorted(tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def preprocessing_fingerprint(processor):
    settings = {
        "max_length": processor.max_length,
        "text_normalization": processor.text_normalization,
        "text_prefix": processor.text_prefix,
        "tokenizer": type(processor.tokenizer).__name__,
        "vocab_size": len(processor.tokenizer),
        "image_processor": processor.image_processor.to_dict(),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


@torch.inference_mode()
def compute_features(base_model, processor, split, use_images, towers, batch_size=64):
    """({"text_embeds", "image_embeds", "has_image"} of the frozen `towers` ("text", "vision") for every row,
    {row position: reason} of the images that could not be used)."""
    loader = torch.utils.data.DataLoader(IndexedRows(split), batch_size=batch_size,
                                         collate_fn=TweetCollator(processor, use_images))
    chunks = {"text_embeds": [], "image_embeds": [], "has_image": []}
    image_errors = {}
    device = base_model.device
    for batch in loader:
        batch, batch_image_errors = model_inputs_and_image_errors(batch)
        image_errors.update(batch_image_errors)
        batch = {key: value.to(device) for key, value in batch.items()}
        if "text" in towers:
            chunks["text_embeds"].append(
                base_model.get_text_features(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            )
        if "vision" in towers:
            has_image = batch["has_image"]
            image_embeds = torch.zeros(len(has_image), base_model.config.vision_config.hidden_size, device=device)
            if has_image.any():
                image_embeds[has_image] = base_model.get_image_features(batch["pixel_values"][has_image]).float()
            chunks["image_embeds"].append(image_embeds)
            chunks["has_image"].append(has_image)
    return {key: torch.cat(values).cpu() for key, values in chunks.items() if values}, image_errors


def cached_features(base_model, processor, split, use_images, towers, cache_dir, batch_size=64):
    """Like `compute_features`, read from `cache_dir` when this tower/data/preprocessing was seen before."""
    key_parts = {
        "towers": {
            tower: tower_fingerprint(base_model.text_model if tower == "text" else base_model.vision_model)
            for tower in sorted(towers)
        },
        "pooling": [base_model.config.text_pooling, base_model.config.vision_pooling],
        "dataset": split._fingerprint,
        "preprocessing": preprocessing_fingerprint(processor),
        "images": use_images,
    }
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "features" / f"{'-'.join(sorted(towers))}-{key}.pt"
    if path.is_file():
        stored = torch.load(path)
        return stored["features"], stored["image_errors"]
    features, image_errors = compute_features(base_model, processor, split, use_images, towers, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as partial:  # a killed save leaves a hidden partial file, never read as an entry
        torch.save({"features": features, "image_errors": image_errors, "key": key_parts}, partial)
    return features, image_errors

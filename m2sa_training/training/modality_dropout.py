"""Modality dropout: during training, show some tweets without their image, so the multimodal model also learns to
classify from the text alone (as it must for tweets that have no image).

Whether a row loses its image in an epoch is a hash of (seed, epoch, row position) compared with the probability,
so the decision is the same whichever batch, DataLoader worker or process the row lands in, and a resumed run drops
exactly the images the uninterrupted run dropped. No random-number generator is drawn from, so dropout and shuffling
are unchanged by it.
"""

import hashlib
import logging

import torch

logger = logging.getLogger(__name__)

_MANTISSA_BITS = 53  # a float64 holds integers below 2**53 exactly: the draws are exact multiples of 2**-53


def image_dropout_for(options, modality):
    """The image-dropout probability of a run: `--image-dropout` for the multimodal model, else 0.

    A text-only model reads no images. The image-only model reads blanked texts, so a dropped image would leave it
    nothing to classify from but the label frequencies: it keeps every image.
    """
    if options.image_dropout == 0 or modality == "multimodal":
        return options.image_dropout
    logger.info("--image-dropout %g is not used by the %s model: it drops an image only where a text remains",
                options.image_dropout, modality)
    return 0.0


def uniform_draw(seed, epoch, row_position):
    """A number in [0, 1) that depends only on (seed, epoch, row position)."""
    digest = hashlib.blake2b(f"image-dropout:{seed}:{epoch}:{row_position}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> (64 - _MANTISSA_BITS)) / 2**_MANTISSA_BITS


def dropped_images(row_positions, seed, epoch, probability):
    """`(batch,)` bool: which rows (by their position in the training split) are shown without their image."""
    return torch.tensor([uniform_draw(seed, epoch, int(row)) < probability for row in row_positions],
                        dtype=torch.bool)


def drop_images(has_image, row_positions, seed, epoch, probability):
    """`has_image` with the dropped rows set to False (the model then uses its "no image" embedding for them)."""
    dropped = dropped_images(row_positions, seed, epoch, probability).to(has_image.device)
    return has_image & ~dropped

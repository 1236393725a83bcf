"""Checkpoint averaging: one model whose weights are the mean of several epoch checkpoints' (as fairseq's
`scripts/average_checkpoints.py --num-epoch-checkpoints N`), a candidate beside the best epoch
(`--average-last-checkpoints`)."""

from pathlib import Path

from safetensors.torch import load_file

from modeling_m2sa.errors_m2sa import M2SAError

WEIGHTS_FILE = "model.safetensors"
"""Where `Accelerator.save_state` puts the weights of a checkpoint's (only) model."""


def averaged_weights(checkpoints):
    """The mean of the model weights saved in each of `checkpoints` (folders of one run): each floating-point tensor
    averaged in float64 and cast back to its dtype; other tensors (integer buffers such as position ids) as the first
    checkpoint holds them."""
    checkpoints = [Path(checkpoint) for checkpoint in checkpoints]
    first = load_file(checkpoints[0] / WEIGHTS_FILE)
    sums = {name: tensor.double() for name, tensor in first.items() if tensor.is_floating_point()}
    for checkpoint in checkpoints[1:]:
        weights = load_file(checkpoint / WEIGHTS_FILE)
        if weights.keys() != first.keys():
            raise M2SAError(f"Checkpoint {str(checkpoint)!r} holds other weights than {str(checkpoints[0])!r}: only "
                            f"checkpoints of one run can be averaged.", code="bad_checkpoint")
        for name, total in sums.items():
            total += weights[name].double()
    return {name: (sums[name] / len(checkpoints)).to(tensor.dtype) if name in sums else tensor
            for name, tensor in first.items()}

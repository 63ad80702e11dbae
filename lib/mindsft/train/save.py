"""What a training checkpoint holds, and the error that stops a diverged run.
Where and how it is written (names, ranks, keep-last-N, the non-finite check) is
the checkpoint owner's (mindsft.train.checkpoint.RunCheckpoints)."""

import mindspore as ms
import numpy as np

from mindsft.errors import MindsftError
from mindsft.pet.config import LORA_ALPHA_RECORD
from mindsft.train import checkpoint


def saved_parameters(net, trainable: list, optimizer, lora) -> list:
    """What a checkpoint holds: the trained weights (with `lora`: only the
    `trainable` A and B) and the optimizer state."""
    weights = trainable if lora is not None else net.get_parameters()
    return list(weights) + optimizer.state_parameters()


def checkpoint_tensors(
    parameters: list, epoch: int, step_in_epoch: int, signature: dict, lora
) -> dict:
    """A checkpoint's contents after `step_in_epoch` steps of 0-based `epoch`: the
    `parameters`, the position, LoRA's alpha (merge-lora checks it against its
    config) and the run's signature."""
    tensors = {p.name: p for p in parameters}
    tensors.update(checkpoint.position_tensors(epoch, step_in_epoch))
    if lora is not None:
        tensors[LORA_ALPHA_RECORD] = ms.Tensor(np.float32(lora.lora_alpha))
    tensors[checkpoint.SIGNATURE] = checkpoint.signature_tensor(signature)
    return tensors


def diverged(step: int, what: str, last_checkpoint) -> MindsftError:
    """The error stopping a run whose step `step` gave something non-finite."""
    kept = last_checkpoint or "none written yet"
    return MindsftError(f"step {step}: {what}; training stopped (last good checkpoint: {kept})")

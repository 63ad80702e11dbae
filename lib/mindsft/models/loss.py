"""Causal-LM loss as MindFormers computes it in training: inputs are
`input_ids[:, :-1]`, targets `labels[:, 1:]`, and a target counts when it is not
the ignore id (-100) and its input token is not the pad id (0)."""

import mindspore as ms
from mindspore import ops


def shift_for_causal_lm(input_ids, labels):
    """(tokens, targets) = (input_ids[:, :-1], labels[:, 1:]); works on numpy arrays
    and MindSpore tensors alike."""
    return input_ids[:, :-1], labels[:, 1:]


def nll_sum(logits, targets, ignore_index=-100):
    """Sum of the negative log-likelihoods of the targets that are not `ignore_index`,
    in float32, and their number (a float32 scalar). Differentiable.

    logits: (N, V); targets: int32 (N,). Mean loss = sum / count."""
    if logits.dtype != ms.float32:
        logits = logits.astype(ms.float32)
    mask = (targets != ignore_index).astype(ms.float32)
    safe = ops.where(targets == ignore_index, ops.zeros_like(targets), targets)  # any valid index
    logp = ops.log_softmax(logits, -1)  # (N, V)
    picked = ops.gather_elements(logp, 1, safe.reshape(-1, 1)).reshape(-1)  # (N,)
    return -(picked * mask).sum(), mask.sum()


def token_nll_sum(logits, targets, tokens, pad_token_id=0, ignore_index=-100):
    """`nll_sum` over every position, a target also masked where its input token is
    the pad id. logits: (B, T, V); targets, tokens: int32 (B, T)."""
    targets = ops.where(tokens == pad_token_id, ops.full_like(targets, ignore_index), targets)
    return nll_sum(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index)

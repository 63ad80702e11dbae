"""Causal-LM loss as MindFormers computes it in training: inputs are
`input_ids[:, :-1]`, targets `labels[:, 1:]`, and a target counts when it is not
the ignore id (-100) and its input token is not the pad id (0)."""

import mindspore as ms
from mindspore import ops


def shift_for_causal_lm(input_ids, labels):
    """(tokens, targets) = (input_ids[:, :-1], labels[:, 1:]); works on numpy arrays
    and MindSpore tensors alike."""
    return input_ids[:, :-1], labels[:, 1:]


def token_nll_sum(logits, targets, tokens, pad_token_id=0, ignore_index=-100):
    """Sum of per-token negative log-likelihoods over the loss mask, in float32, and
    the number of tokens in the mask (a float32 scalar). Differentiable.

    logits: (B, T, V); targets, tokens: int32 (B, T). Mean loss = sum / count."""
    vocab = logits.shape[-1]
    logits = logits.reshape(-1, vocab)  # (N, V)
    if logits.dtype != ms.float32:
        logits = logits.astype(ms.float32)
    targets = targets.reshape(-1)
    mask = ops.logical_and(targets != ignore_index, tokens.reshape(-1) != pad_token_id).astype(
        ms.float32
    )
    safe = ops.where(targets == ignore_index, ops.zeros_like(targets), targets)  # any valid index
    logp = ops.log_softmax(logits, -1)  # (N, V)
    picked = ops.gather_elements(logp, 1, safe.reshape(-1, 1)).reshape(-1)  # (N,)
    return -(picked * mask).sum(), mask.sum()

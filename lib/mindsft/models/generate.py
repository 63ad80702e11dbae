"""Autoregressive decoding with a KV cache: greedy, or sampled with temperature,
top-k and top-p applied in that order (as HF's logits processors)."""

import mindspore as ms
import numpy as np


def _sample(logits: np.ndarray, rng, temperature: float, top_k: int, top_p: float) -> int:
    """Draw one token from float64 logits (V,) after temperature, top-k and top-p."""
    logits = logits / max(temperature, 1e-6)
    if 0 < top_k < logits.size:
        kth = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = cumulative - probs[order] < top_p  # the smallest head whose mass reaches top_p
        drop = order[~keep]
        probs[drop] = 0.0
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


def generate(model, prompt_ids, max_new_tokens=128, *, do_sample=False, temperature=1.0, top_k=0,
             top_p=1.0, seed=0, eos_token_id=None) -> list:  # fmt: skip
    """New token ids continuing `prompt_ids` (a list of ints, BOS included where wanted).

    Stops after `max_new_tokens` or once `eos_token_id` (default: the config's) is
    produced; the EOS is included, as in HF `generate`."""
    if not prompt_ids:
        raise ValueError("generate needs at least one prompt token")
    eos = model.config.eos_token_id if eos_token_id is None else eos_token_id
    rng = np.random.default_rng(seed)
    model.set_train(False)
    tokens = ms.Tensor(np.asarray([prompt_ids], dtype=np.int32))  # (1, T)
    cache = None
    out = []
    for _ in range(max_new_tokens):
        logits, cache = model.forward_cached(tokens, cache)
        last = logits[0, -1].asnumpy().astype(np.float64)  # (V,)
        if do_sample:
            token = _sample(last, rng, temperature, top_k, top_p)
        else:
            token = int(last.argmax())
        out.append(token)
        if token == eos:
            break
        tokens = ms.Tensor(np.asarray([[token]], dtype=np.int32))  # (1, 1)
    return out

"""Autoregressive decoding with a KV cache: greedy, or sampled with temperature,
top-k and top-p applied in that order (as HF's logits processors)."""

import mindspore as ms
import numpy as np
from mindspore import ops

from mindsft.models.rope import rope_tables

CACHE_BLOCK = 128  # cache sizes are multiples of this


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


def _padded(cache, capacity):
    """KVCache tensors grown with zeros to `capacity` positions: tuples of (B, n_kv, L, hd)."""

    def grow(t):
        b, n, length, hd = t.shape
        return ops.concat((t, ops.zeros((b, n, capacity - length, hd), t.dtype)), 2)

    return tuple(grow(k) for k, _ in cache.layers), tuple(grow(v) for _, v in cache.layers)


def _compiled_step(model):
    """`model.decode_step` under ms.jit, made once per model (one compile per cache size)."""
    step = getattr(model, "_jit_decode_step", None)
    if step is None:
        step = ms.jit(model.decode_step)
        object.__setattr__(model, "_jit_decode_step", step)
    return step


def generate(
    model,
    prompt_ids,
    max_new_tokens=128,
    *,
    do_sample=False,
    temperature=1.0,
    top_k=0,
    top_p=1.0,
    seed=0,
    eos_token_id=None,
) -> list:
    """New token ids continuing `prompt_ids` (a list of ints, BOS included where wanted).

    Stops after `max_new_tokens` or once `eos_token_id` (default: the config's) is
    produced; the EOS is included, as in HF `generate`. The prompt runs in one
    PyNative pass; each further token is one compiled step over a fixed-size KV
    cache (sized to a multiple of 128 positions so similar prompts share a graph)."""
    if not prompt_ids:
        raise ValueError("generate needs at least one prompt token")
    eos = model.config.eos_token_id if eos_token_id is None else eos_token_id
    rng = np.random.default_rng(seed)
    model.set_train(False)

    def pick(logits) -> int:
        last = logits[0, -1].asnumpy().astype(np.float64)  # (V,)
        return _sample(last, rng, temperature, top_k, top_p) if do_sample else int(last.argmax())

    logits, cache = model.forward_cached(ms.Tensor(np.asarray([prompt_ids], dtype=np.int32)))
    out = [pick(logits)]
    if out[-1] == eos or max_new_tokens <= 1:
        return out[:max_new_tokens]
    start = len(prompt_ids)
    capacity = -(-(start + max_new_tokens) // CACHE_BLOCK) * CACHE_BLOCK
    cos, sin = rope_tables(model.config.head_dim, capacity, model.config.rope_theta)
    cos, sin = (
        ms.Tensor(cos[:, None, :], model.dtype),
        ms.Tensor(sin[:, None, :], model.dtype),
    )  # (L, 1, hd)
    keys, values = _padded(cache, capacity)
    step = _compiled_step(model)
    for position in range(start, start + max_new_tokens - 1):
        token = ms.Tensor(np.asarray([[out[-1]]], dtype=np.int32))  # (1, 1)
        position_t = ms.Tensor([position], ms.int32)
        # mutable: the cache tuples are variables of the graph, not constants to recompile on
        logits, keys, values = step(
            token, position_t, cos, sin, ms.mutable(keys), ms.mutable(values)
        )
        out.append(pick(logits))
        if out[-1] == eos:
            break
    return out

"""Autoregressive decoding with a KV cache: greedy, or sampled with temperature,
top-k and top-p applied in that order (as HF's logits processors).

A `Generator` holds one model and its compiled decoding step. The prompt runs in
one PyNative pass; each further token is one compiled step over a fixed-size KV
cache, sized to a multiple of CACHE_BLOCK positions, so MindSpore compiles the
step once per cache size and prompts of similar length share a graph."""

from pathlib import Path
from typing import NamedTuple

import mindspore as ms
import numpy as np
from mindspore import ops

from mindsft.errors import MindsftError
from mindsft.models.config import load_config
from mindsft.models.loading import load_model
from mindsft.models.rope import rope_tables

CACHE_BLOCK = 128  # cache sizes are multiples of this


def sample_token(logits: np.ndarray, rng, temperature: float, top_k: int, top_p: float) -> int:
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


class Completion(NamedTuple):
    """A prompt's continuation, as `Generator.complete` returns it."""

    prompt_ids: list  # BOS and the prompt text's ids
    ids: list  # the new ids, the EOS included where decoding stopped at it
    stopped_at_eos: bool
    text: str  # the new ids decoded, without the EOS


class Generator:
    """Decodes continuations with one model (set to inference mode), keeping its decoding
    step compiled between calls."""

    def __init__(self, model):
        self.model = model
        self.step = ms.jit(model.decode_step)

    def __call__(
        self,
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
        produced; the EOS is included, as in HF `generate`."""
        if not prompt_ids:
            raise ValueError("generate needs at least one prompt token")
        model = self.model
        eos = model.config.eos_token_id if eos_token_id is None else eos_token_id
        rng = np.random.default_rng(seed)
        model.set_train(False)

        def pick(logits) -> int:
            last = logits[0, -1].asnumpy().astype(np.float64)  # (V,)
            if do_sample:
                return sample_token(last, rng, temperature, top_k, top_p)
            return int(last.argmax())

        logits, cache = model.forward_cached(ms.Tensor(np.asarray([prompt_ids], dtype=np.int32)))
        out = [pick(logits)]
        if out[-1] == eos or max_new_tokens <= 1:
            return out[:max_new_tokens]
        start = len(prompt_ids)
        capacity = -(-(start + max_new_tokens) // CACHE_BLOCK) * CACHE_BLOCK
        cos, sin = self.rope(capacity)
        keys, values = _padded(cache, capacity)
        for position in range(start, start + max_new_tokens - 1):
            token = ms.Tensor(np.asarray([[out[-1]]], dtype=np.int32))  # (1, 1)
            position_t = ms.Tensor([position], ms.int32)
            # mutable: the cache tuples are variables of the graph, not constants to recompile on
            logits, keys, values = self.step(
                token, position_t, cos, sin, ms.mutable(keys), ms.mutable(values)
            )
            out.append(pick(logits))
            if out[-1] == eos:
                break
        return out

    def rope(self, capacity: int) -> tuple:
        """Rotary tables for a cache of `capacity` positions: cos, sin (L, 1, hd)."""
        config, dtype = self.model.config, self.model.dtype
        cos, sin = rope_tables(config.head_dim, capacity, config.rope_theta)
        return ms.Tensor(cos[:, None, :], dtype), ms.Tensor(sin[:, None, :], dtype)

    def complete(self, tokenizer, text: str, max_new_tokens=128, **sampling) -> Completion:
        """Continue `text` (BOS, then its ids from the SentencePiece `tokenizer`) and decode
        the new ids without a final EOS; `sampling` as for calling the generator."""
        config = self.model.config
        prompt_ids = [config.bos_token_id, *tokenizer.encode(text)]
        ids = self(prompt_ids, max_new_tokens, **sampling)
        stopped = bool(ids) and ids[-1] == config.eos_token_id
        return Completion(prompt_ids, ids, stopped, tokenizer.decode(ids[:-1] if stopped else ids))


def load_tokenizer(model_file, vocab_size: int):
    """The SentencePiece model at `model_file`, checked to have `vocab_size` pieces."""
    import sentencepiece as spm

    if not Path(model_file).is_file():
        raise MindsftError(f"{model_file}: no such tokenizer file")
    try:
        tokenizer = spm.SentencePieceProcessor(model_file=str(model_file))
    except (OSError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MindsftError(f"{model_file}: not a SentencePiece model ({reason})") from None
    if tokenizer.get_piece_size() != vocab_size:
        raise MindsftError(
            f"{model_file}: tokenizer has {tokenizer.get_piece_size()} pieces, "
            f"the model's vocab_size is {vocab_size}"
        )
    return tokenizer


def load_generator(config_path, checkpoint, model_file) -> tuple:
    """(Generator, tokenizer) for a checkpoint, its config and its SentencePiece model."""
    config = load_config(config_path)
    tokenizer = load_tokenizer(model_file, config.vocab_size)
    return Generator(load_model(config, checkpoint)), tokenizer

"""Autoregressive decoding with a KV cache, a batch of prompts at a time (left
padding): greedy, or sampled with temperature, top-k and top-p applied in that
order (as HF's logits processors).

A `Generator` holds one model and its compiled decoding step. The prompts run in
one PyNative pass; each further token is one compiled step over a fixed-size KV
cache, sized to a multiple of CACHE_BLOCK positions, so MindSpore compiles the
step once per batch size and cache size and prompts of similar length share a
graph. Padding is invisible to every row: pad positions are masked out of
attention and each row's rotary positions start at its first token."""

from pathlib import Path
from typing import NamedTuple

import mindspore as ms
import numpy as np
from mindspore import ops

from mindsft.errors import MindsftError
from mindsft.models.config import load_config
from mindsft.models.llama import MASK_VALUE
from mindsft.models.loading import load_model
from mindsft.models.rope import rope_tables

CACHE_BLOCK = 128  # cache sizes are multiples of this
# a head whose mass is within this of top_p counts as reaching it, so that a sum
# landing on top_p keeps the same tokens whatever its last bit (as HF's exact rule)
TOP_P_TOLERANCE = 1e-9


def top_p_keep(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Boolean mask (V,) of the nucleus: the smallest set of most likely tokens whose
    mass reaches `top_p` (HF's TopPLogitsWarper), at least one token. A token stays
    while the tokens ahead of it (ties in index order) hold less than top_p, within
    TOP_P_TOLERANCE: with [0.5, 0.3, 0.15, 0.05] and 0.8 that is {0, 1}."""
    order = np.argsort(-probs, kind="stable")
    ahead = np.concatenate(([0.0], np.cumsum(probs[order])[:-1]))  # mass before each
    keep = np.zeros(probs.size, dtype=bool)
    keep[order] = ahead < top_p - TOP_P_TOLERANCE
    keep[order[0]] = True
    return keep


def sample_token(logits: np.ndarray, rng, temperature: float, top_k: int, top_p: float) -> int:
    """Draw one token from float64 logits (V,) after temperature, top-k and top-p."""
    logits = logits / max(temperature, 1e-6)
    if 0 < top_k < logits.size:
        kth = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if top_p < 1.0:
        probs[~top_p_keep(probs, top_p)] = 0.0
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


class Completion(NamedTuple):
    """A prompt's continuation, as `Generator.complete` returns it."""

    prompt_ids: list  # BOS and the prompt text's ids
    ids: list  # the new ids, the EOS included where decoding stopped at it
    stopped_at_eos: bool
    text: str  # the new ids decoded, without the EOS


class Decoding:
    """The state of one batch being decoded: the left-padded KV cache and where
    each row stands in it.

    Rows are left-padded to the longest prompt, P positions; row b has pads[b]
    pad positions first, which no query attends to, and its rotary positions
    start at 0 on its first real token, so a row decodes exactly as it would
    alone. The cache holds `capacity` slots; the next token of every row goes
    into slot `slot`."""

    def __init__(self, pads, slot: int, capacity: int, keys, values, cos, sin):
        self.pads = np.asarray(pads, np.int32)  # (B,)
        self.slot, self.capacity = slot, capacity
        self.keys, self.values = keys, values  # per layer (B, n_kv, L, hd)
        self.cos, self.sin = cos, sin  # rotary tables (L, 1, hd)


def _grow(tensors, capacity):
    """Cache tensors (B, n_kv, P, hd) grown with zeros to `capacity` positions."""

    def grow(t):
        b, n, length, hd = t.shape
        return ops.concat((t, ops.zeros((b, n, capacity - length, hd), t.dtype)), 2)

    return tuple(grow(t) for t in tensors)


class Generator:
    """Decodes continuations with one model (set to inference mode), a batch of
    prompts at a time, keeping its decoding step compiled between calls.

    The prompts run in one PyNative pass (`start`); each further token of every
    row is one compiled step (`advance`) over a fixed-size KV cache, sized to a
    multiple of CACHE_BLOCK positions, so MindSpore compiles the step once per
    batch size and cache size."""

    def __init__(self, model):
        self.model = model
        self.step = ms.jit(self._decode_step)

    def __call__(self, prompt_ids, max_new_tokens=128, **sampling) -> list:
        """New token ids continuing `prompt_ids` (a list of ints, BOS included where
        wanted); see `batch`."""
        return self.batch([prompt_ids], max_new_tokens, **sampling)[0]

    def batch(
        self,
        prompts,
        max_new_tokens=128,
        *,
        do_sample=False,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        seed=0,
        eos_token_id=None,
    ) -> list:
        """New token ids continuing each of `prompts` (lists of ints), decoded
        together with left padding; greedy rows are token for token what each
        prompt gives alone. A row stops after `max_new_tokens` (an int, or one per
        prompt) or once it produced `eos_token_id` (default: the config's); the
        EOS is included, as in HF `generate`. Sampling draws the rows in order from
        one generator seeded by `seed`."""
        if not prompts or not all(prompts):
            raise ValueError("generate needs at least one prompt token in every prompt")
        eos = self.model.config.eos_token_id if eos_token_id is None else eos_token_id
        limits = (
            [max_new_tokens] * len(prompts)
            if isinstance(max_new_tokens, int)
            else list(max_new_tokens)
        )
        rng = np.random.default_rng(seed)

        def pick(row) -> int:
            row = row.astype(np.float64)
            if do_sample:
                return sample_token(row, rng, temperature, top_k, top_p)
            return int(row.argmax())

        logits, state = self.start(prompts, max(limits))
        outs, done = [[] for _ in prompts], [limit <= 0 for limit in limits]
        while True:
            for b, out in enumerate(outs):
                if not done[b]:
                    out.append(pick(logits[b]))
                    done[b] = out[-1] == eos or len(out) >= limits[b]
            if all(done) or state.slot >= state.capacity:
                return outs
            pad = self.model.config.pad_token_id
            logits = self.advance(state, [pad if done[b] else o[-1] for b, o in enumerate(outs)])

    def start(self, prompts, max_new_tokens: int) -> tuple:
        """Run the left-padded prompts through the model in one pass; return the
        logits of each row's last position, float32 (B, V), and the Decoding with
        room for `max_new_tokens` more tokens."""
        model = self.model
        model.set_train(False)
        width = max(len(p) for p in prompts)
        batch, pads = len(prompts), [width - len(p) for p in prompts]
        ids = np.full((batch, width), model.config.pad_token_id, np.int32)
        for b, p in enumerate(prompts):
            ids[b, pads[b] :] = p
        capacity = -(-(width + max(max_new_tokens - 1, 0)) // CACHE_BLOCK) * CACHE_BLOCK
        cos, sin = self.rope(capacity)
        positions = np.maximum(np.arange(width)[None, :] - np.asarray(pads)[:, None], 0)
        # row b's query t sees keys pads[b] <= k <= t: (B, 1, P, P)
        key = np.arange(width)
        allowed = (key[None, None, :] <= key[None, :, None]) & (
            key[None, None, :] >= np.asarray(pads)[:, None, None]
        )
        mask = np.where(allowed, 0.0, MASK_VALUE).astype(np.float32)[:, None]
        rope = self._row_rope(
            ops.gather(cos, ms.Tensor(positions, ms.int32), 0),
            ops.gather(sin, ms.Tensor(positions, ms.int32), 0),
        )
        mask = self._heads_mask(ms.Tensor(mask))
        h = model.embed(ms.Tensor(ids))  # (B*P, D)
        keys, values = [], []
        for layer in model.model.layers:
            h, k, v = layer.extend(h, rope, mask, batch, width, None, None)
            keys.append(k)
            values.append(v)
        logits = model.logits(h, batch, width)[:, -1].asnumpy()  # (B, V)
        state = Decoding(
            pads, width, capacity, _grow(keys, capacity), _grow(values, capacity), cos, sin
        )
        return logits, state

    def advance(self, state: Decoding, tokens) -> np.ndarray:
        """Feed one token per row (B ints) into slot `state.slot`; return the next
        logits, float32 (B, V)."""
        token = ms.Tensor(np.asarray(tokens, np.int32)[:, None])  # (B, 1)
        positions = ms.Tensor(state.slot - state.pads, ms.int32)  # (B,)
        # mutable: the cache tuples are variables of the graph, not constants to recompile on
        logits, state.keys, state.values = self.step(
            token,
            ms.Tensor([state.slot], ms.int32),
            positions,
            ms.Tensor(state.pads[:, None], ms.int32),
            state.cos,
            state.sin,
            ms.mutable(state.keys),
            ms.mutable(state.values),
        )
        state.slot += 1
        return logits[:, 0].asnumpy()

    def _decode_step(self, token, slot, positions, pads, cos_table, sin_table, keys, values):
        """One new position for every row, compiled: token int32 (B, 1) goes into
        cache slot `slot` (1,) at rotary position `positions` (B,); row b sees the
        slots from pads[b] (B, 1) to `slot`. keys/values per layer (B, n_kv, L, hd).
        Returns (logits (B, 1, V), keys, values)."""
        model = self.model
        batch, capacity = token.shape[0], cos_table.shape[0]
        h = model.embed(token)  # (B, D)
        rope = self._row_rope(
            ops.gather(cos_table, positions, 0).reshape(batch, 1, 1, -1),
            ops.gather(sin_table, positions, 0).reshape(batch, 1, 1, -1),
        )
        span = ops.arange(capacity, dtype=ms.int32).reshape(1, capacity)
        visible = ops.logical_and(span <= slot, span >= pads)  # (B, L)
        mask = ops.where(visible, 0.0, MASK_VALUE).astype(ms.float32).reshape(batch, 1, 1, capacity)
        mask = self._heads_mask(mask)
        into = (span == slot).reshape(1, 1, capacity, 1)
        new_keys, new_values = (), ()
        for i, layer in enumerate(model.model.layers):
            h, k, v = layer.decode(h, rope, mask, batch, keys[i], values[i], into)
            new_keys += (k,)
            new_values += (v,)
        return model.logits(h, batch, 1), new_keys, new_values

    def _row_rope(self, cos, sin):
        """Per-row rotary tables cos/sin (B, T, 1, hd) -> (cos_q, sin_q, cos_k, sin_k),
        (B, T, heads, hd), 1/sqrt(hd) folded into the q tables (see
        LlamaForCausalLM.expand_rope)."""
        model = self.model
        heads, n_kv = model.config.num_heads, model.config.n_kv_heads
        return (
            ops.tile(cos * model.scale, (1, 1, heads, 1)),
            ops.tile(sin * model.scale, (1, 1, heads, 1)),
            ops.tile(cos, (1, 1, n_kv, 1)),
            ops.tile(sin, (1, 1, n_kv, 1)),
        )

    def _heads_mask(self, mask):
        """A per-row additive mask (B, 1, T, S) -> (B, n_kv, G*T, S), as the attention
        takes it (see LlamaForCausalLM.expand_mask)."""
        return ops.tile(mask, (1, self.model.config.n_kv_heads, self.model.group, 1))

    def rope(self, capacity: int) -> tuple:
        """Rotary tables for a cache of `capacity` positions: cos, sin (L, 1, hd)."""
        config, dtype = self.model.config, self.model.dtype
        cos, sin = rope_tables(config.head_dim, capacity, config.rope_theta)
        return ms.Tensor(cos[:, None, :], dtype), ms.Tensor(sin[:, None, :], dtype)

    def complete(self, tokenizer, text: str, max_new_tokens=128, **sampling) -> Completion:
        """Continue `text` (BOS, then its ids from the SentencePiece `tokenizer`) and decode
        the new ids without a final EOS; `sampling` as for calling the generator."""
        return self.complete_batch(tokenizer, [text], max_new_tokens, **sampling)[0]

    def complete_batch(self, tokenizer, texts, max_new_tokens=128, **sampling) -> list:
        """`complete` for several texts, decoded together (see `batch`)."""
        config = self.model.config
        prompts = [[config.bos_token_id, *tokenizer.encode(text)] for text in texts]
        done = []
        for prompt_ids, ids in zip(
            prompts, self.batch(prompts, max_new_tokens, **sampling), strict=True
        ):
            stopped = bool(ids) and ids[-1] == config.eos_token_id
            text = tokenizer.decode(ids[:-1] if stopped else ids)
            done.append(Completion(prompt_ids, ids, stopped, text))
        return done


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

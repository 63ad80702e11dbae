"""A MindSpore Llama with MindFormers' parameter names, numerically HF's Llama.

Hidden states travel as 2-D (B*T, D) matrices so every projection is one plain
GEMM; only attention itself uses batched matmuls. Parameters are float32; the
compute dtype (float32, float16, or bfloat16 where the backend has kernels)
applies to matmuls, while norms and softmax run in float32."""

import math
from typing import NamedTuple

import mindspore as ms
import numpy as np
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import Normal

from mindsft.errors import MindsftError
from mindsft.models.attention import Attention, dense
from mindsft.models.masks import MASK_VALUE, causal_rows, chunked_mask
from mindsft.models.norm import RMSNorm
from mindsft.models.rope import rope_tables

HALVES_MIN = 64  # shortest half-sequence for which attention splits into two query halves


def in_halves(seq: int) -> bool:
    """Whether T positions attend in two query halves (see Attention.halves)."""
    return seq % 2 == 0 and seq // 2 >= HALVES_MIN


class FeedForward(nn.Cell):
    """SwiGLU: w2(silu(w1 x) * w3 x); w1/w2/w3 are HF's gate/down/up projections."""

    def __init__(self, config):
        super().__init__()
        self.w1 = dense(config.hidden_size, config.intermediate_size)
        self.w2 = dense(config.intermediate_size, config.hidden_size)
        self.w3 = dense(config.hidden_size, config.intermediate_size)

    def construct(self, x):
        # x: (N, D) -> (N, F) -> (N, D)
        return self.w2(ops.silu(self.w1(x)) * self.w3(x))


class DecoderLayer(nn.Cell):
    """Pre-norm block: h = x + attention(norm(x)); out = h + feed_forward(norm(h))."""

    def __init__(self, config):
        super().__init__()
        dtype = getattr(ms, config.compute_dtype)
        self.attention_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)
        self.feed_forward = FeedForward(config)

    def construct(self, x, rope, mask, batch, seq, chunks=0):
        """T positions over themselves: x (B*T, D) -> (B*T, D). `mask` is one causal
        block; at full length the pair of blocks of the two query halves (see
        Attention.halves); with `chunks` > 0 the chunked mask (see Attention.chunked).
        One entry point, so Cell.recompute() covers all three."""
        h = self.attention_norm(x)
        if chunks:
            a = self.attention.chunked(h, rope, mask, batch, seq, chunks)
        elif isinstance(mask, tuple):
            a = self.attention.halves(h, rope, mask, batch, seq)
        else:
            a = self.attention(h, rope, mask, batch, seq)
        return self.feed(x, a)

    def extend(self, x, rope, mask, batch, seq, past_k, past_v):
        """T new positions after a KV cache (see Attention.extend): (out, keys, values)."""
        a, k, v = self.attention.extend(
            self.attention_norm(x), rope, mask, batch, seq, past_k, past_v
        )
        return self.feed(x, a), k, v

    def decode(self, x, rope, mask, batch, keys, values, slot):
        """One new position into a fixed-size cache (see Attention.decode)."""
        a, k, v = self.attention.decode(
            self.attention_norm(x), rope, mask, batch, keys, values, slot
        )
        return self.feed(x, a), k, v

    def feed(self, x, a):
        """The residual around attention output `a`, then the feed-forward block and its
        residual: (B*T, D) -> (B*T, D)."""
        h = x + a
        return h + self.feed_forward(self.ffn_norm(h))


class Embedding(nn.Cell):
    """Token embedding table held as `embedding_weight` (MindFormers' name)."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.embedding_weight = Parameter(
            ms.Tensor(shape=(vocab_size, dim), dtype=ms.float32, init=Normal(0.02)),
            name="embedding_weight",
        )

    def construct(self, ids):
        # ids: (B, T) int32 -> (B*T, D)
        return ops.gather(self.embedding_weight, ids.reshape(-1), 0)


class LlamaModel(nn.Cell):
    """Embeddings, decoder layers, final norm (MindFormers' `model.` prefix)."""

    def __init__(self, config):
        super().__init__()
        self.tok_embeddings = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.CellList([DecoderLayer(config) for _ in range(config.num_layers)])
        self.norm_out = RMSNorm(
            config.hidden_size, config.rms_norm_eps, getattr(ms, config.compute_dtype)
        )


class OutputProjection(nn.Cell):
    """logits = h W^T for the (vocab, D) output matrix, with a hand-written backward
    pass that picks the faster MatMul layout: oneDNN forms dh^T = W^T dlogits^T
    (both operands transposed) faster than dh = dlogits W at the shapes of a
    32000-token vocabulary; dW = dlogits^T h is kept."""

    def __init__(self):
        super().__init__()
        self.forward = ops.MatMul(transpose_b=True)
        self.grad_h_t = ops.MatMul(transpose_a=True, transpose_b=True)
        self.grad_w = ops.MatMul(transpose_a=True)

    def construct(self, h, weight):
        return self.forward(h, weight)  # (N, V)

    def bprop(self, h, weight, out, dout):
        d_h = ops.transpose(self.grad_h_t(weight, dout), (1, 0))  # (D, N) -> (N, D)
        return d_h, self.grad_w(dout, h)


class LlamaForCausalLM(nn.Cell):
    """construct(input_ids int32 (B, T)) -> float32 logits (B, T, vocab)."""

    def __init__(self, config):
        super().__init__()
        if config.compute_dtype == "bfloat16" and ms.get_context("device_target") == "CPU":
            raise MindsftError(
                "LlamaConfig: compute_dtype bfloat16 has no MatMul kernel on MindSpore's CPU "
                "backend; "
                "use float32 (or float16)"
            )
        self.config = config
        self.dtype = getattr(ms, config.compute_dtype)
        self.model = LlamaModel(config)
        self.tied = config.tie_word_embeddings
        self.group = config.num_heads // config.n_kv_heads
        self.scale = 1.0 / math.sqrt(config.head_dim)  # folded into the q rotary tables
        if not self.tied:
            self.lm_head = dense(config.hidden_size, config.vocab_size)
        self.output = OutputProjection()
        causal = np.triu(np.full((config.seq_length, config.seq_length), MASK_VALUE, np.float32), 1)
        self.causal_mask = ms.Tensor(causal)  # (P, P)
        # causal attention at full length in two query halves (see Attention.halves)
        half = config.seq_length // 2
        self.split_halves = in_halves(config.seq_length)
        self.causal_halves = (ms.Tensor(causal[:half, :half]), ms.Tensor(causal[half:]))
        self.set_positions(config.seq_length)
        self.apply_compute_dtype()

    def set_positions(self, positions: int):
        """(Re)build the rotary tables for `positions` positions, in the compute dtype."""
        cos, sin = rope_tables(self.config.head_dim, positions, self.config.rope_theta)
        self.max_positions = positions
        self.rope_cos = ms.Tensor(cos[:, None, :], self.dtype)  # (P, 1, hd)
        self.rope_sin = ms.Tensor(sin[:, None, :], self.dtype)

    def apply_compute_dtype(self):
        """Make every Dense sub-cell compute in the config's dtype. Call again after
        replacing sub-cells (LoRA) when that dtype is not float32."""
        if self.dtype == ms.float32:
            return
        for _, cell in self.cells_and_names():
            if isinstance(cell, nn.Dense):
                cell.to_float(self.dtype)

    def recompute_layers(self):
        """Recompute each decoder layer's activations in the backward pass instead of
        keeping them (MindFormers' recompute_config.recompute), with MindSpore's own
        Cell.recompute(): a compiled step marks the layers' ops for its recompute
        pass, PyNative re-runs each layer's forward. A layer's input is kept; so are
        the attention core's inputs and outputs (q, k, v, the output and the
        probabilities) in a compiled step, because its hand-written backward
        (ScaledDotProduct.bprop) is not a gradient node to that pass."""
        for layer in self.model.layers:
            layer.recompute()

    def project(self, h):
        """Final norm and output projection: h (N, D) -> float32 logits (N, V)."""
        h = self.model.norm_out(h)
        if not self.tied and not isinstance(self.lm_head, nn.Dense):  # LoRA-wrapped
            out = self.lm_head(h)
        else:
            weight = (
                self.model.tok_embeddings.embedding_weight if self.tied else self.lm_head.weight
            )
            out = self.output(h, weight if self.dtype == ms.float32 else weight.astype(self.dtype))
        return out if self.dtype == ms.float32 else out.astype(ms.float32)

    def logits(self, h, batch, seq):
        """Final norm and output projection: h (B*T, D) -> float32 logits (B, T, V)."""
        return self.project(h).reshape(batch, seq, -1)

    def selected_logits(self, h, index):
        """Logits at the rows `index` (N,) of h (B*T, D) only: float32 (N, V). The
        norm and the projection run on those rows alone, except through a LoRA-wrapped
        output layer, whose dropout mask has a row per position."""
        if self.tied or isinstance(self.lm_head, nn.Dense):
            return self.project(ops.gather(h, index, 0))  # (N, D) -> (N, V)
        return ops.gather(self.project(h), index, 0)

    def embed(self, input_ids):
        """input_ids (B, T) -> hidden states (B*T, D) in the compute dtype."""
        h = self.model.tok_embeddings(input_ids)
        return h if self.dtype == ms.float32 else h.astype(self.dtype)

    def expand_rope(self, cos, sin, batch):
        """Broadcast the rotary tables, once per forward, to the shapes every layer meets,
        so the layers' elementwise ops are same-shape (MindSpore's PyNative CPU kernels
        run much slower when they broadcast). cos/sin (T, 1, hd), the same for every
        row, or (B, T, 1, hd) -> (cos_q, sin_q, cos_k, sin_k): (B, T, H, hd) with
        1/sqrt(hd) folded in for q, (B, T, n_kv, hd) for k."""
        heads, n_kv = self.config.num_heads, self.config.n_kv_heads
        rows = 1
        if cos.ndim == 3:
            cos, sin, rows = (
                ops.expand_dims(cos, 0),
                ops.expand_dims(sin, 0),
                batch,
            )  # (1, T, 1, hd)
        return (
            ops.tile(cos * self.scale, (rows, 1, heads, 1)),
            ops.tile(sin * self.scale, (rows, 1, heads, 1)),
            ops.tile(cos, (rows, 1, n_kv, 1)),
            ops.tile(sin, (rows, 1, n_kv, 1)),
        )

    def expand_mask(self, mask, batch):
        """An additive mask (T, S), the same for every row, or (B, T, S) ->
        (B, n_kv, G*T, S); a chunked one (B, n, c, 2c) -> (B, n_kv, n, G*c, 2c): the
        query rows repeated for each query head of a group (broadcast once per
        forward, as `expand_rope`)."""
        n_kv = self.config.n_kv_heads
        if mask.ndim == 2:
            return ops.tile(mask, (batch, n_kv, self.group, 1))
        mask = ops.expand_dims(mask, 1)  # (B, 1, ...)
        return ops.tile(mask, (1, n_kv) + (1,) * (mask.ndim - 4) + (self.group, 1))

    def rope(self, positions, batch, seq):
        """The expanded rotary tables (see `expand_rope`) of `positions` (B, T), or of
        0..T-1 in every row when None."""
        cos, sin = self.rope_cos, self.rope_sin  # (P, 1, hd)
        if positions is not None:
            at = positions.reshape(-1)
            shape = (batch, seq, 1, self.config.head_dim)
            return self.expand_rope(
                ops.gather(cos, at, 0).reshape(shape), ops.gather(sin, at, 0).reshape(shape), batch
            )
        # slice only when shorter: MindSpore's CPU StridedSlice is slow on full-size tables
        if seq < cos.shape[0]:
            cos, sin = cos[:seq], sin[:seq]
        return self.expand_rope(cos, sin, batch)

    def hidden(self, input_ids, positions=None, segments=None, chunks=0):
        """The decoder stack: input_ids (B, T) -> hidden states (B*T, D) before the
        final norm. `positions` (B, T): rotary positions (None: 0..T-1 in every row).
        `segments` (B, T): sample numbers; a token attends to the earlier tokens of its
        own sample only (None: to every earlier token of its row). `chunks` > 0: each
        of that many chunks attends over itself and the chunk before it only (every
        sample must start no earlier than the chunk before its tokens')."""
        batch, seq = input_ids.shape
        if seq > self.max_positions:
            raise ValueError("input longer than the model's rotary tables (config seq_length)")
        h = self.embed(input_ids)  # (B*T, D)
        rope = self.rope(positions, batch, seq)
        if chunks:
            mask = self.expand_mask(chunked_mask(segments, chunks), batch)
            for layer in self.model.layers:
                h = layer(h, rope, mask, batch, seq, chunks)
            return h
        full = segments is None and seq == self.causal_mask.shape[0]  # the prebuilt masks fit
        if in_halves(seq):
            half = seq // 2
            if full:
                first, second = self.causal_halves
            else:
                first = causal_rows(segments, 0, half, half)
                second = causal_rows(segments, half, half, seq)
            masks = (self.expand_mask(first, batch), self.expand_mask(second, batch))
            for layer in self.model.layers:
                h = layer(h, rope, masks, batch, seq)
            return h
        mask = self.causal_mask if full else causal_rows(segments, 0, seq, seq)
        mask = self.expand_mask(mask, batch)
        for layer in self.model.layers:
            h = layer(h, rope, mask, batch, seq)
        return h

    def construct(self, input_ids):
        batch, seq = input_ids.shape
        return self.logits(self.hidden(input_ids), batch, seq)

    def forward_cached(self, input_ids, cache=None):
        """Incremental forward for decoding (PyNative): `input_ids` (B, T) follow the
        tokens already in `cache` (a KVCache or None). Returns (logits (B, T, V), cache)."""
        batch, seq = input_ids.shape
        past = 0 if cache is None else cache.length
        if past + seq > self.max_positions:
            self.set_positions(max(past + seq, 2 * self.max_positions))
        h = self.embed(input_ids)
        # new tokens see the whole cache and the new tokens before them: (T, P + T)
        mask = np.triu(np.full((seq, past + seq), MASK_VALUE, np.float32), past + 1)
        rope = self.expand_rope(
            self.rope_cos[past : past + seq], self.rope_sin[past : past + seq], batch
        )
        mask = self.expand_mask(ms.Tensor(mask), batch)
        layers = []
        for i, layer in enumerate(self.model.layers):
            past_k, past_v = (None, None) if cache is None else cache.layers[i]
            h, k, v = layer.extend(h, rope, mask, batch, seq, past_k, past_v)
            layers.append((k, v))
        return self.logits(h, batch, seq), KVCache(past + seq, layers)

    def decode_step(self, token, position, cos_table, sin_table, keys, values):
        """One decoding step over a fixed-size cache, with static shapes so `ms.jit`
        compiles it once: token int32 (B, 1); position int32 (1,); cos/sin tables
        (L, 1, hd); keys/values tuples per layer of (B, n_kv, L, hd), positions at or
        after `position` unused. Returns (logits (B, 1, V), keys, values)."""
        batch = token.shape[0]
        capacity = cos_table.shape[0]
        h = self.embed(token)  # (B, D)
        cos, sin = (
            ops.gather(cos_table, position, 0),
            ops.gather(sin_table, position, 0),
        )  # (1, 1, hd)
        span = ops.arange(capacity, dtype=ms.int32)
        slot = (span == position).reshape(1, 1, capacity, 1)
        mask = ops.where(span <= position, 0.0, MASK_VALUE).reshape(1, capacity)  # (1, L)
        rope = self.expand_rope(cos, sin, batch)
        mask = self.expand_mask(mask, batch)
        new_keys, new_values = (), ()
        for i, layer in enumerate(self.model.layers):
            h, k, v = layer.decode(h, rope, mask, batch, keys[i], values[i], slot)
            new_keys += (k,)
            new_values += (v,)
        return self.logits(h, batch, 1), new_keys, new_values


class KVCache(NamedTuple):
    """Keys and values of the positions decoded so far."""

    length: int  # positions held
    layers: list  # per layer (k, v), each (B, n_kv, length, hd)

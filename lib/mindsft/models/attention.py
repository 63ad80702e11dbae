"""Causal self-attention with rotary embeddings, multi-head or grouped-query.

Grouped-query attention never copies k/v: the query heads sharing a kv head are
stacked along the sequence axis, (B, n_kv, G*T, hd), so one batched matmul per
kv head serves the whole group (the same numbers as HF's `repeat_kv`, where
query head h reads kv head h // G). Rotary tables and masks arrive already
broadcast to the shapes they meet (see `LlamaForCausalLM.expand_rope` and
`expand_mask`), so every elementwise op here is same-shape.

`Attention` has one entry point per way the model attends, each taking the mask
that way needs: `construct` (T positions over themselves, one causal block),
`halves` (the same in two query halves), `chunked` (packed rows whose samples are
short: each chunk of queries over its own and the previous chunk's keys), `extend`
(T new positions after a KV cache) and `decode` (one position into a fixed-size
cache). The model chooses; nothing here inspects what kind of mask it was given."""

import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import Normal

from mindsft.models.masks import pair_chunks
from mindsft.models.rope import rotate_half_matrix


def dense(n_in: int, n_out: int) -> nn.Dense:
    """A bias-free projection, weight (n_out, n_in), initialised N(0, 0.02) as HF/MindFormers."""
    return nn.Dense(n_in, n_out, weight_init=Normal(0.02), has_bias=False)


class ScaledDotProduct(nn.Cell):
    """softmax(q k^T + mask) v with a hand-written backward pass.

    construct(q (.., M, hd), k (.., S, hd), v (.., S, hd), mask (.., M, S))
    -> (out (.., M, hd), probs (.., M, S)); q arrives already scaled, the mask is
    additive float32. The probabilities are returned so the backward pass reuses them.

    The backward pass is FlashAttention's: with dP = dO v^T, the softmax gradient
    dS = P * (dP - D) needs D = rowsum(dP * P), and D = rowsum(dO * O) since
    O = P v: a reduction over (.., M, hd) instead of (.., M, S). D then folds into
    the dP matmul as one extra column, [dO, -D] [v, 1]^T = dP - D, so the M x S
    score-sized work left is four batched matmuls and one multiply. MindSpore's
    automatic softmax gradient made four passes over the scores, most of the time
    in a row reduction; the one-column-wider dP matmul costs little more."""

    def __init__(self, dtype=ms.float32):
        super().__init__()
        self.dtype = dtype
        self.qk = ops.BatchMatMul(transpose_b=True)
        self.pv = ops.BatchMatMul()
        self.tn = ops.BatchMatMul(transpose_a=True)

    def construct(self, q, k, v, mask):
        scores = self.qk(q, k)  # (.., M, S)
        if self.dtype != ms.float32:
            scores = scores.astype(ms.float32)
        probs = ops.softmax(scores + mask, -1)
        if self.dtype != ms.float32:
            probs = probs.astype(self.dtype)
        return self.pv(probs, v), probs

    def bprop(self, q, k, v, mask, out, dout):
        o, probs = out
        d_o = dout[0]  # (.., M, hd); nothing downstream uses probs
        row = (d_o.astype(ms.float32) * o.astype(ms.float32)).sum(-1, keepdims=True)
        d_aug = ops.concat((d_o, (-row).astype(d_o.dtype)), -1)  # (.., M, hd + 1)
        v_aug = ops.concat((v, ops.ones(v.shape[:-1] + (1,), v.dtype)), -1)  # (.., S, hd + 1)
        d_scores = probs * self.qk(d_aug, v_aug)  # (.., M, S)
        d_q = self.pv(d_scores, k)
        d_k = self.tn(d_scores, q)
        d_v = self.tn(probs, d_o)
        return d_q, d_k, d_v, ops.zeros_like(mask)


def heads_first(x):
    """(B, T, n_kv, hd) -> (B, n_kv, T, hd): keys and values as the cache holds them."""
    return ops.transpose(x, (0, 2, 1, 3))


class Attention(nn.Cell):
    """wq, wk, wv, wo projections (MindFormers names) around scaled dot-product attention.

    Every entry point takes x (B*T, D) and `rope`: (cos_q, sin_q, cos_k, sin_k) for
    the T new positions, (B, T, heads, hd), with 1/sqrt(hd) folded into the q tables;
    masks are additive float32."""

    def __init__(self, config):
        super().__init__()
        self.n_heads = config.num_heads
        self.n_kv = config.n_kv_heads
        self.group = self.n_heads // self.n_kv
        self.head_dim = config.head_dim
        self.dtype = getattr(ms, config.compute_dtype)
        dim = config.hidden_size
        self.wq = dense(dim, self.n_heads * self.head_dim)
        self.wk = dense(dim, self.n_kv * self.head_dim)
        self.wv = dense(dim, self.n_kv * self.head_dim)
        self.wo = dense(self.n_heads * self.head_dim, dim)
        self.rot = ms.Tensor(rotate_half_matrix(self.head_dim), self.dtype)
        self.core = ScaledDotProduct(self.dtype)

    def rotate(self, x, cos, sin, batch, seq, heads):
        """Rotary embeddings: x (B*T, heads*hd) -> (B, T, heads, hd); cos/sin (B, T, heads, hd)."""
        x = x.reshape(batch, seq, heads, self.head_dim)
        turned = ops.matmul(x.reshape(-1, self.head_dim), self.rot)  # rotate_half as a GEMM
        return x * cos + turned.reshape(batch, seq, heads, self.head_dim) * sin

    def project(self, x, rope, batch, seq):
        """x (B*T, D) -> q (B, T, H, hd) rotated and scaled, k (B, T, n_kv, hd) rotated,
        v (B, T, n_kv, hd)."""
        cos_q, sin_q, cos_k, sin_k = rope
        q = self.rotate(self.wq(x), cos_q, sin_q, batch, seq, self.n_heads)
        k = self.rotate(self.wk(x), cos_k, sin_k, batch, seq, self.n_kv)
        v = self.wv(x).reshape(batch, seq, self.n_kv, self.head_dim)
        return q, k, v

    def attend(self, q, k, v, mask, batch, seq):
        """q (B, T, H, hd) over k/v (B, n_kv, S, hd) with mask (B, n_kv, G*T, S) -> (B*T, D)."""
        hd, group, n_kv = self.head_dim, self.group, self.n_kv
        q = ops.transpose(
            q.reshape(batch, seq, n_kv, group, hd), (0, 2, 3, 1, 4)
        )  # (B, n_kv, G, T, hd)
        q = q.reshape(batch, n_kv, group * seq, hd)
        out, _ = self.core(q, k, v, mask)  # (B, n_kv, G*T, hd)
        out = ops.transpose(
            out.reshape(batch, n_kv, group, seq, hd), (0, 3, 1, 2, 4)
        )  # (B, T, n_kv, G, hd)
        return self.wo(out.reshape(batch * seq, self.n_heads * hd))

    def construct(self, x, rope, mask, batch, seq):
        """T positions attending over themselves: x (B*T, D) -> (B*T, D);
        mask (B, n_kv, G*T, T)."""
        q, k, v = self.project(x, rope, batch, seq)
        return self.attend(q, heads_first(k), heads_first(v), mask, batch, seq)

    def extend(self, x, rope, mask, batch, seq, past_k, past_v):
        """T new positions after the P cached ones in past_k/past_v (B, n_kv, P, hd),
        None when nothing is cached; mask (B, n_kv, G*T, P + T). Returns the output
        (B*T, D) and the keys and values of all P + T positions (B, n_kv, P + T, hd)."""
        q, k, v = self.project(x, rope, batch, seq)
        k, v = heads_first(k), heads_first(v)  # (B, n_kv, T, hd)
        if past_k is not None:
            k = ops.concat((past_k, k), 2)  # (B, n_kv, P + T, hd)
            v = ops.concat((past_v, v), 2)
        return self.attend(q, k, v, mask, batch, seq), k, v

    def decode(self, x, rope, mask, batch, keys, values, slot):
        """One new position into a fixed-size cache: keys/values (B, n_kv, L, hd) hold
        every position, `slot` bool (1, 1, L, 1) marks where the new one goes and the
        mask (B, n_kv, G, L) hides the unused ones. Returns (out (B, D), keys, values)."""
        q, k, v = self.project(x, rope, batch, 1)
        k = ops.where(slot, heads_first(k), keys)  # (B, n_kv, L, hd)
        v = ops.where(slot, heads_first(v), values)
        return self.attend(q, k, v, mask, batch, 1), k, v

    def chunked(self, x, rope, mask, batch, seq, chunks):
        """The T positions cut into `chunks` chunks of c; each chunk's queries attend
        to the keys of the chunk before it and its own only (2c keys instead of up to
        T): for packed rows where every query's sample starts no earlier than the
        previous chunk (data/batch.py checks). x (B*T, D) -> (B*T, D); mask
        (B, n_kv, n, G*c, 2c) (models/masks.py `chunked_mask`, tiled)."""
        q, k, v = self.project(x, rope, batch, seq)
        hd, group, n_kv, c = self.head_dim, self.group, self.n_kv, seq // chunks
        q = ops.transpose(
            q.reshape(batch, chunks, c, n_kv, group, hd), (0, 3, 1, 4, 2, 5)
        )  # (B, n_kv, n, G, c, hd)
        q = q.reshape(batch, n_kv, chunks, group * c, hd)
        k = ops.transpose(
            k.reshape(batch, chunks, c, n_kv, hd), (0, 3, 1, 2, 4)
        )  # (B, n_kv, n, c, hd)
        v = ops.transpose(v.reshape(batch, chunks, c, n_kv, hd), (0, 3, 1, 2, 4))
        out, _ = self.core(q, pair_chunks(k, 2), pair_chunks(v, 2), mask)  # (B, n_kv, n, G*c, hd)
        out = ops.transpose(
            out.reshape(batch, n_kv, chunks, group, c, hd), (0, 2, 4, 1, 3, 5)
        )  # (B, n, c, n_kv, G, hd)
        return self.wo(out.reshape(batch * seq, self.n_heads * hd))

    def halves(self, x, rope, masks, batch, seq):
        """Causal attention in two query halves: the first half of the positions
        attends to the first half of the keys only, the second to all of them,
        so 3/4 of the score-sized work is done (FlashAttention skips the same
        blocks). x (B*T, D) -> (B*T, D); masks: the tiled causal blocks
        (B, n_kv, G*T/2, T/2) and (B, n_kv, G*T/2, T). The halves come from one
        transpose and an unstack: MindSpore's CPU StridedSlice is slow to cut them."""
        q, k, v = self.project(x, rope, batch, seq)
        hd, group, n_kv, half = self.head_dim, self.group, self.n_kv, seq // 2
        q1, q2 = ops.unstack(
            ops.transpose(q.reshape(batch, 2, half, n_kv, group, hd), (1, 0, 3, 4, 2, 5)), 0
        )  # each (B, n_kv, G, T/2, hd)
        k1, k2 = ops.unstack(
            ops.transpose(k.reshape(batch, 2, half, n_kv, hd), (1, 0, 3, 2, 4)), 0
        )  # each (B, n_kv, T/2, hd)
        v1, v2 = ops.unstack(ops.transpose(v.reshape(batch, 2, half, n_kv, hd), (1, 0, 3, 2, 4)), 0)
        k_all, v_all = ops.concat((k1, k2), 2), ops.concat((v1, v2), 2)  # (B, n_kv, T, hd)
        rows = (batch, n_kv, group * half, hd)
        out1, _ = self.core(q1.reshape(rows), k1, v1, masks[0])
        out2, _ = self.core(q2.reshape(rows), k_all, v_all, masks[1])
        out = ops.stack((out1, out2), 0).reshape(2, batch, n_kv, group, half, hd)
        out = ops.transpose(out, (1, 0, 4, 2, 3, 5))  # (B, 2, T/2, n_kv, G, hd)
        return self.wo(out.reshape(batch * seq, self.n_heads * hd))

"""Additive attention masks built inside the compiled graph, for rows cut to a
bucketed length and for packed rows (several samples per row, numbered by
`segments` (B, T), data/batch.py): a token attends to itself and to earlier tokens
of its own sample. MASK_VALUE marks what a query must not see (exp() of it is
exactly 0 in float32).

Two layouts:
- `causal_rows`: queries first..first+rows over keys 0..keys (one block, or one of
  the two query halves).
- `chunked_mask`: the row cut into n chunks of c, each chunk's queries over the keys
  of the chunk before it and its own, (2c keys): what `Attention.chunked` computes,
  for packed rows whose every sample starts at most one chunk before its queries.
"""

import mindspore as ms
from mindspore import ops

MASK_VALUE = -1e9


def causal_rows(segments, first: int, rows: int, keys: int):
    """Queries first..first+rows over keys 0..keys, causal, and within a sample where
    `segments` (B, T) numbers them: (B, rows, keys); else (rows, keys)."""
    q = ops.arange(first, first + rows, dtype=ms.int32).reshape(rows, 1)
    allowed = ops.arange(0, keys, dtype=ms.int32).reshape(1, keys) <= q  # (rows, keys)
    if segments is not None:
        batch = segments.shape[0]
        q_seg = segments[:, first : first + rows].reshape(batch, rows, 1)
        allowed = ops.logical_and(q_seg == segments[:, :keys].reshape(batch, 1, keys), allowed)
    return ops.where(allowed, 0.0, MASK_VALUE).astype(ms.float32)


def pair_chunks(x, axis: int, fill=0):
    """Each chunk of `x` beside the one before it: x (.., n, c, ..) with the n chunks
    on `axis` -> (.., n, 2c, ..), chunk i holding chunks i-1 and i; before the first,
    `fill`. Cut by unstack and joined by concat (MindSpore's CPU StridedSlice is slow)."""
    chunks = ops.unstack(x, axis)  # n x (.., c, ..)
    before = [ops.full_like(chunks[0], fill)] + list(chunks[:-1])
    pairs = [ops.concat((b, c), axis) for b, c in zip(before, chunks)]  # noqa: B905 (graph mode)
    return ops.stack(pairs, axis)


def chunked_mask(segments, chunks: int):
    """The mask of `Attention.chunked` for samples numbered by `segments` (B, T):
    (B, n, c, 2c). Query a of chunk i sits at i*c + a, key b of its pair at
    (i - 1)*c + b: the key is not later when b <= a + c; keys before the row (chunk
    -1) belong to sample -1, which no query is in."""
    batch, seq = segments.shape
    c = seq // chunks
    q_seg = segments.reshape(batch, chunks, c)
    k_seg = pair_chunks(q_seg, 1, -1)  # (B, n, 2c)
    a = ops.arange(0, c, dtype=ms.int32).reshape(c, 1)
    b = ops.arange(0, 2 * c, dtype=ms.int32).reshape(1, 2 * c)
    same = q_seg.reshape(batch, chunks, c, 1) == k_seg.reshape(batch, chunks, 1, 2 * c)
    return ops.where(ops.logical_and(same, b <= a + c), 0.0, MASK_VALUE).astype(ms.float32)

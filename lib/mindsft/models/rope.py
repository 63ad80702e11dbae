"""Rotary position embeddings exactly as HF Llama computes them: inverse frequencies
theta^(-2i/d) in float32, angles duplicated over both halves of the head, and the
`rotate_half` convention (x1, x2) -> (-x2, x1). MindFormers' converter does not
permute q/k, so HF-layout weights use these tables unchanged."""

import numpy as np


def rope_tables(head_dim: int, positions: int, theta: float):
    """cos and sin tables, float32 numpy arrays of shape (positions, head_dim)."""
    exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
    inv_freq = (np.float32(1.0) / (np.float32(theta) ** exponents)).astype(np.float32)  # (hd/2,)
    freqs = np.arange(positions, dtype=np.float32)[:, None] * inv_freq[None, :]  # (P, hd/2)
    angles = np.concatenate([freqs, freqs], axis=-1)  # (P, hd)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rotate_half_matrix(head_dim: int):
    """R with x @ R == concat(-x2, x1) for x = concat(x1, x2): rotate_half as one small
    matmul (a single 2-D GEMM instead of two slices, a negation and a concat)."""
    half = head_dim // 2
    r = np.zeros((head_dim, head_dim), dtype=np.float32)
    idx = np.arange(half)
    r[idx + half, idx] = -1.0  # output column j < half takes -x[j + half]
    r[idx, idx + half] = 1.0  # output column j + half takes x[j]
    return r

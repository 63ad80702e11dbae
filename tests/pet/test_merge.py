"""Merging LoRA into base weights, the pure functions: exact against the LoRA
paper's formula, base names and dtypes kept (the checkpoint-file merge and
`merge-lora`: tests/train/test_merge.py)."""

import numpy as np
import pytest
from mindsft.errors import MindsftError
from mindsft.pet.config import LORA_A, LORA_B
from mindsft.pet.merge import lora_pairs, merge_tensors, merge_weight


def lora_tensors(seed, out=6, inp=5, r=3):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(out, inp)).astype(np.float32),
        rng.normal(size=(r, inp)).astype(np.float32),
        rng.normal(size=(out, r)).astype(np.float32),
    )


def test_merge_weight_is_exactly_w_plus_scaled_b_a_in_fp32():
    w, a, b = lora_tensors(0)
    want = w + np.float32(2.5) * (b @ a)
    got = merge_weight(w, a, b, 2.5)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    half = merge_weight(w.astype(np.float16), a, b, 2.5)  # computed in fp32, stored as fp16
    assert half.dtype == np.float16
    assert np.array_equal(
        half, (w.astype(np.float16).astype(np.float32) + 2.5 * (b @ a)).astype(np.float16)
    )


def test_merge_tensors_keeps_base_names_and_merges_only_the_paired_weights():
    w, a, b = lora_tensors(1)
    norm = np.ones(6, np.float32)
    base = {"m.wq.weight": w, "m.norm.weight": norm}
    lora = {f"m.wq.{LORA_A}": a, f"m.wq.{LORA_B}": b}
    assert lora_pairs(lora) == {"m.wq.weight": (f"m.wq.{LORA_A}", f"m.wq.{LORA_B}")}
    merged = dict(merge_tensors(base.items(), lora, 0.5))
    assert list(merged) == ["m.wq.weight", "m.norm.weight"]
    assert merged["m.norm.weight"] is norm
    assert np.array_equal(merged["m.wq.weight"], w + np.float32(0.5) * (b @ a))
    assert np.array_equal(base["m.wq.weight"], w)  # the input is not modified
    with pytest.raises(MindsftError, match="no matching B"):
        dict(merge_tensors(base.items(), {f"m.wq.{LORA_A}": a}, 0.5))

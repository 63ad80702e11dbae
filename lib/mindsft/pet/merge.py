"""Fold LoRA matrices into the base weights: a pure function over state dicts.

    W' = W + (alpha / rank) * B @ A      computed in float32, stored in W's dtype

The result has the base checkpoint's names and nothing else, so applying the
merge twice is impossible by construction (the LoRA keys are gone).
"""

import numpy as np

from mindsft.errors import MindsftError
from mindsft.pet.config import LORA_A, LORA_B


def lora_pairs(names) -> dict:
    """{base weight name: (A name, B name)} for every LoRA pair among `names`."""
    names = set(names)
    pairs = {}
    for name in names:
        if name.endswith("." + LORA_A):
            prefix = name[: -len(LORA_A) - 1]
            b = f"{prefix}.{LORA_B}"
            if b not in names:
                raise MindsftError(f"{name}: LoRA A has no matching B ({b})")
            pairs[f"{prefix}.weight"] = (name, b)
    return pairs


def merge_weight(weight: np.ndarray, a: np.ndarray, b: np.ndarray, scaling: float) -> np.ndarray:
    """W + scaling * B @ A in float32, returned in W's dtype. W (out, in), A (r, in), B (out, r)."""
    w32 = weight.astype(np.float32)
    delta = b.astype(np.float32) @ a.astype(np.float32)  # (out, in)
    if delta.shape != w32.shape:
        raise MindsftError(
            f"LoRA update shape {delta.shape} does not match base weight {w32.shape}"
        )
    return (w32 + np.float32(scaling) * delta).astype(weight.dtype)


def merge_tensors(items, lora: dict, scaling: float, pairs=None):
    """Yield (name, array) for each (name, base array) of `items`, merged with its
    LoRA pair from `lora` where it has one, unchanged otherwise, one base tensor at
    a time. `pairs` is `lora_pairs(lora)` where the caller has it already."""
    pairs = lora_pairs(lora) if pairs is None else pairs
    for name, weight in items:
        if name in pairs:
            a_name, b_name = pairs[name]
            weight = merge_weight(weight, lora[a_name], lora[b_name], scaling)
        yield name, weight

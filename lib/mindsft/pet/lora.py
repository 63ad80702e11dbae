"""LoRA for MindSpore `nn.Dense` layers, named as MindFormers/mindpet name them.

A targeted Dense keeps its base `weight` under the original name and gains
`mindpet_delta_lora_a` (rank, in) and `mindpet_delta_lora_b` (out, rank) beside
it, so a base checkpoint loads unchanged and a MindFormers LoRA checkpoint
(`model.layers.0.attention.wq.mindpet_delta_lora_a`) loads into it too.

    y = x W^T + (alpha / rank) * dropout(x) A^T B^T

A is Kaiming-uniform with a = sqrt(5) (bound 1/sqrt(in), as the LoRA paper's
code and PEFT), B is zero, so the wrapped model starts equal to the base model.
Dropout masks come from a counter-based hash of (seed, step, layer, element),
so a resumed run draws exactly the masks an uninterrupted run would have.
"""

import math
import re

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from mindsft.errors import MindsftError
from mindsft.pet.config import LORA_A, LORA_B, LoraConfig, is_lora_param

DROPOUT_KEY = "lora_dropout_key"  # training-only state, never written to checkpoints

_MASK32 = 0xFFFFFFFF


def hashed_keep_mask(shape, key, salt: int, keep: float):
    """Bernoulli(keep) float32 mask of `shape`, a pure function of (key, salt, index).

    One multiply-xorshift round of Mueller's hash32 over uint32 values held in
    int64 (shifts as floor divisions), then the low 24 bits against keep * 2^24."""
    n = 1
    for d in shape:
        n *= d
    idx = ops.arange(0, n, dtype=ms.int64).reshape(shape)
    h = ops.bitwise_and(idx * 0x9E3779B1 + (key * 0x85EBCA77 + salt), _MASK32)
    h = ops.bitwise_and(ops.bitwise_xor(h, h // 65536) * 0x45D9F3B, _MASK32)
    h = ops.bitwise_xor(h, h // 65536)
    return ops.cast(ops.bitwise_and(h, 0xFFFFFF) < int(keep * 16777216), ms.float32)


class LoraDense(nn.Cell):
    """A Dense with a low-rank trainable update; the base weight is shared, not copied."""

    def __init__(self, base: nn.Dense, cfg: LoraConfig, salt: int, key: Parameter, rng):
        super().__init__()
        out_ch, in_ch = base.weight.shape
        self.weight = base.weight
        self.bias = base.bias if base.has_bias else None
        bound = 1.0 / math.sqrt(in_ch)  # kaiming_uniform(a=sqrt(5)): gain*sqrt(3/fan_in)
        a = rng.uniform(-bound, bound, size=(cfg.lora_rank, in_ch)).astype(np.float32)
        self.mindpet_delta_lora_a = Parameter(Tensor(a), name=LORA_A)  # (r, in)
        self.mindpet_delta_lora_b = Parameter(
            Tensor(np.zeros((out_ch, cfg.lora_rank), np.float32)), name=LORA_B
        )
        self.lora_dropout_key = key
        self.scaling = cfg.scaling
        self.keep = 1.0 - cfg.lora_dropout
        self.salt = salt
        self.matmul = ops.MatMul(transpose_b=True)

    def construct(self, x):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])  # (N, in)
        dtype = x2.dtype
        y = self.matmul(x2, ops.cast(self.weight, dtype))  # (N, out)
        if self.bias is not None:
            y = y + ops.cast(self.bias, dtype)
        h = x2
        if self.training and self.keep < 1.0:
            mask = hashed_keep_mask(x2.shape, self.lora_dropout_key, self.salt, self.keep)
            h = h * ops.cast(mask, dtype) * (1.0 / self.keep)
        h = self.matmul(h, ops.cast(self.mindpet_delta_lora_a, dtype))  # (N, r)
        h = self.matmul(h, ops.cast(self.mindpet_delta_lora_b, dtype))  # (N, out)
        y = y + h * self.scaling
        return y.reshape(shape[:-1] + (y.shape[-1],))


def dense_paths(net: nn.Cell) -> list:
    """Paths of every `nn.Dense` (or LoRA-wrapped Dense) cell in `net`."""
    return [name for name, cell in net.cells_and_names() if isinstance(cell, (nn.Dense, LoraDense))]


def select_targets(net: nn.Cell, target_modules: str) -> list:
    """Dense cell paths matched (re.match, as MindFormers) by `target_modules`;
    matching nothing is an error that names the Dense cells that exist."""
    pattern = re.compile(target_modules)
    paths = dense_paths(net)
    chosen = [p for p in paths if pattern.match(p)]
    if not chosen:
        shown = sorted({re.sub(r"\.\d+\.", ".N.", p) for p in paths})
        raise MindsftError(
            f"pet_config.target_modules {target_modules!r} matches no Dense module; modules: {shown}"
        )
    return chosen


def inject_lora(net: nn.Cell, cfg: LoraConfig, seed: int = 0) -> list:
    """Replace each targeted Dense by a LoraDense in place, keep every existing
    parameter name, and return the wrapped paths. A is seeded by (seed, order)."""
    targets = select_targets(net, cfg.target_modules)
    key = Parameter(Tensor([0], ms.int64), name=DROPOUT_KEY, requires_grad=False)
    rng = np.random.default_rng(seed)
    for salt, path in enumerate(targets):
        parent_path, _, attr = path.rpartition(".")
        parent = net
        for part in parent_path.split(".") if parent_path else []:
            parent = getattr(parent, part) if not part.isdigit() else parent[int(part)]
        base = getattr(parent, attr)
        if isinstance(base, LoraDense):
            raise MindsftError(f"{path}: LoRA is already applied")
        base_name = base.weight.name
        lora = LoraDense(base, cfg, salt * 7919 + 1, key, rng)
        setattr(parent, attr, lora)
        # setattr re-prefixes names with the attribute only: restore the full paths
        lora.weight.name = base_name
        if lora.bias is not None:
            lora.bias.name = f"{path}.bias"
        lora.mindpet_delta_lora_a.name = f"{path}.{LORA_A}"
        lora.mindpet_delta_lora_b.name = f"{path}.{LORA_B}"
        lora.lora_dropout_key.name = DROPOUT_KEY
    return targets


def set_dropout_key(net: nn.Cell, key: int) -> None:
    """Set the counter that selects the dropout masks, for PyNative calls; a compiled
    train step writes it inside the graph instead (see mindsft.train.step)."""
    for _, cell in net.cells_and_names():
        if isinstance(cell, LoraDense):
            cell.lora_dropout_key.set_data(Tensor([int(key) & 0x7FFFFFFF], ms.int64))
            return


def freeze_base(net: nn.Cell) -> None:
    """Make only the LoRA matrices trainable."""
    for p in net.get_parameters():
        p.requires_grad = is_lora_param(p.name)


def count_params(net: nn.Cell) -> tuple:
    """(trainable, total) parameter element counts, the dropout key excluded."""
    params = [p for p in net.get_parameters() if p.name != DROPOUT_KEY]
    total = sum(int(np.prod(p.shape)) for p in params)
    trainable = sum(int(np.prod(p.shape)) for p in params if p.requires_grad)
    return trainable, total

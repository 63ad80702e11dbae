"""LoRA for MindSpore `nn.Dense` layers, named as MindFormers/mindpet name them.

A targeted Dense keeps its base `weight` under the original name and gains
`mindpet_delta_lora_a` (rank, in) and `mindpet_delta_lora_b` (out, rank) beside
it, so a base checkpoint loads unchanged and a MindFormers LoRA checkpoint
(`model.layers.0.attention.wq.mindpet_delta_lora_a`) loads into it too.

    y = x W^T + (alpha / rank) * dropout(x) A^T B^T

A is Kaiming-uniform with a = sqrt(5) (bound 1/sqrt(in), as the LoRA paper's
code and PEFT), B is zero, so the wrapped model starts equal to the base model.

Dropout multiplies the input of A by a mask Parameter, `lora_dropout_mask`,
that `mindsft.pet.dropout.LoraDropout` sizes and draws.
"""

import math
import re

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from mindsft.errors import MindsftError
from mindsft.pet.config import LORA_A, LORA_B, LoraConfig, is_lora_param

DROPOUT_MASK = "lora_dropout_mask"  # training-only state, never written to checkpoints


def is_dropout_mask(name: str) -> bool:
    return name.endswith(DROPOUT_MASK)


class LoraDense(nn.Cell):
    """A Dense with a low-rank trainable update; the base weight is shared, not copied."""

    def __init__(self, base: nn.Dense, cfg: LoraConfig, rng):
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
        self.keep = 1.0 - cfg.lora_dropout
        # (rows, in) bool, sized and drawn by pet.dropout.LoraDropout
        self.lora_dropout_mask = Parameter(
            Tensor(np.ones((1, in_ch), np.bool_)), name=DROPOUT_MASK, requires_grad=False
        )
        self.scaling = cfg.scaling
        self.matmul = ops.MatMul(transpose_b=True)

    def construct(self, x):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])  # (N, in)
        dtype = x2.dtype
        y = self.matmul(x2, ops.cast(self.weight, dtype))  # (N, out)
        if self.bias is not None:
            y = y + ops.cast(self.bias, dtype)
        h = x2
        scale = self.scaling
        if self.training and self.keep < 1.0:
            h = h * ops.cast(self.lora_dropout_mask, dtype)
            scale = self.scaling / self.keep  # inverted dropout's 1/keep
        # the scale multiplies B (out x r) rather than the (N, out) product
        h = self.matmul(h, ops.cast(self.mindpet_delta_lora_a, dtype))  # (N, r)
        y = y + self.matmul(h, ops.cast(self.mindpet_delta_lora_b * scale, dtype))  # (N, out)
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
            f"pet_config.target_modules {target_modules!r} matches no Dense module; modules: "
            f"{shown}"
        )
    return chosen


def inject_lora(net: nn.Cell, cfg: LoraConfig, seed: int = 0) -> list:
    """Replace each targeted Dense by a LoraDense in place, keep every existing
    parameter name, and return the wrapped paths. A is seeded by (seed, order)."""
    targets = select_targets(net, cfg.target_modules)
    rng = np.random.default_rng(seed)
    for path in targets:
        parent_path, _, attr = path.rpartition(".")
        parent = net
        for part in parent_path.split(".") if parent_path else []:
            parent = getattr(parent, part) if not part.isdigit() else parent[int(part)]
        base = getattr(parent, attr)
        if isinstance(base, LoraDense):
            raise MindsftError(f"{path}: LoRA is already applied")
        base_name = base.weight.name
        lora = LoraDense(base, cfg, rng)
        setattr(parent, attr, lora)
        # setattr re-prefixes names with the attribute only: restore the full paths
        lora.weight.name = base_name
        if lora.bias is not None:
            lora.bias.name = f"{path}.bias"
        lora.mindpet_delta_lora_a.name = f"{path}.{LORA_A}"
        lora.mindpet_delta_lora_b.name = f"{path}.{LORA_B}"
        lora.lora_dropout_mask.name = f"{path}.{DROPOUT_MASK}"
    return targets


def freeze_base(net: nn.Cell) -> None:
    """Make only the LoRA matrices trainable."""
    for p in net.get_parameters():
        p.requires_grad = is_lora_param(p.name)


def count_params(net: nn.Cell) -> tuple:
    """(trainable, total) parameter element counts, the dropout masks excluded."""
    params = [p for p in net.get_parameters() if not is_dropout_mask(p.name)]
    total = sum(int(np.prod(p.shape)) for p in params)
    trainable = sum(int(np.prod(p.shape)) for p in params if p.requires_grad)
    return trainable, total

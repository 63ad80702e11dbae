"""MindFormers' optimizer and learning-rate schedules, as MindSpore code.

AdamWeightDecay (MindSpore's `nn.AdamWeightDecay`, which MindFormers'
FP32StateAdamWeightDecay subclasses with float32 states) has no bias correction
and decoupled weight decay:

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    p = p - lr * (m / (eps + sqrt(v)) + wd * p)        (wd only on matrices)

Schedules are called with the 0-based optimizer step, as MindFormers' optimizer
calls them with its `global_step` before incrementing it.
"""

import math

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from mindsft.errors import MindsftError
from mindsft.train.config import OptimizerConfig, ScheduleConfig


def resolve_schedule(cfg: ScheduleConfig, total_steps: int) -> tuple:
    """(warmup_steps, total_steps) after MindFormers' rules: total_steps -1 means
    the run's length; warmup_ratio, when set, wins over warmup_steps."""
    total = total_steps if cfg.total_steps in (None, -1) else int(cfg.total_steps)
    if cfg.warmup_ratio is not None:
        if not 0.0 <= cfg.warmup_ratio <= 1.0:
            raise MindsftError(
                f"lr_schedule.warmup_ratio must be in [0, 1], got {cfg.warmup_ratio}"
            )
        warmup = int(total * cfg.warmup_ratio)
    else:
        warmup = int(cfg.warmup_steps or 0)
    return warmup, total


def learning_rate(cfg: ScheduleConfig, step: int, total_steps: int) -> float:
    """The learning rate of 0-based optimizer step `step`."""
    warmup, total = resolve_schedule(cfg, total_steps)
    lr, lr0 = cfg.learning_rate, cfg.warmup_lr_init
    if cfg.type in ("ConstantWarmUpLR", "constant_with_warmup"):
        if warmup > step:
            return lr0 + (lr - lr0) * step / warmup
        return lr
    if cfg.type == "CosineWithWarmUpLR":
        decay_steps = max(1, total)
        if step >= decay_steps:
            return cfg.lr_end
        if warmup > step:
            return lr0 + (lr - lr0) * step / warmup
        progress = (step - warmup) / max(1, total - warmup)
        percent = max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
        return cfg.lr_end + (lr - cfg.lr_end) * percent
    raise MindsftError(f"lr_schedule.type {cfg.type!r} is unknown")


def decays(param: Parameter) -> bool:
    """MindFormers' grouping: weight decay on matrices, not on 1-D tensors or biases."""
    return len(param.shape) > 1 and not param.name.endswith(".bias")


class AdamWeightDecay(nn.Cell):
    """Float32 moments `adam_m.<name>` / `adam_v.<name>` (MindSpore's names) and a
    `global_step` counter; `construct(grads, lr)` updates the parameters in place."""

    def __init__(self, params, cfg: OptimizerConfig):
        super().__init__()
        self.params = ms.ParameterTuple(params)
        self.moments1 = ms.ParameterTuple(self._zeros(params, "adam_m"))
        self.moments2 = ms.ParameterTuple(self._zeros(params, "adam_v"))
        self.global_step = Parameter(Tensor(0, ms.int32), name="global_step", requires_grad=False)
        self.decay_flags = tuple(decays(p) for p in params)
        self.beta1, self.beta2, self.eps, self.weight_decay = (
            cfg.beta1,
            cfg.beta2,
            cfg.eps,
            cfg.weight_decay,
        )
        self.fused = ops.AdamWeightDecay()

    @staticmethod
    def _zeros(params, prefix):
        return [
            Parameter(
                Tensor(np.zeros(p.shape, np.float32)),
                name=f"{prefix}.{p.name}",
                requires_grad=False,
            )
            for p in params
        ]

    def construct(self, grads, lr):
        # MindSpore's fused AdamWeightDecay kernel updates p, m and v in place in one
        # pass (the same kernel nn.AdamWeightDecay runs); composed from elementwise
        # ops the update takes ~10 passes over every parameter.
        for i in range(len(self.params)):
            decay = self.weight_decay if self.decay_flags[i] else 0.0
            self.fused(
                self.params[i],
                self.moments1[i],
                self.moments2[i],
                lr,
                self.beta1,
                self.beta2,
                self.eps,
                decay,
                ops.cast(grads[i], ms.float32),
            )
        ops.assign_add(self.global_step, Tensor(1, ms.int32))
        return lr

    def state_parameters(self) -> list:
        """Every optimizer state tensor, for checkpoints."""
        return [*self.moments1, *self.moments2, self.global_step]

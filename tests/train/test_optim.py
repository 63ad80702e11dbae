"""The optimizer against MindSpore's own nn.AdamWeightDecay (which MindFormers'
FP32StateAdamWeightDecay subclasses) and the schedules against MindFormers'
documented formulas and examples."""

import math

import mindspore as ms
import numpy as np
import pytest
from mindsft.errors import MindsftError
from mindsft.train.config import OptimizerConfig, ScheduleConfig
from mindsft.train.optim import AdamWeightDecay, learning_rate, resolve_schedule
from mindspore import Parameter, Tensor, nn


def make_params(seed):
    rng = np.random.default_rng(seed)
    return [
        Parameter(Tensor(rng.normal(size=(3, 4)).astype(np.float32)), name="layer.weight"),
        Parameter(Tensor(rng.normal(size=(4,)).astype(np.float32)), name="layer.norm"),
        Parameter(Tensor(rng.normal(size=(3,)).astype(np.float32)), name="layer.bias"),
    ]


def test_adamweightdecay_matches_mindspore_nn_adamweightdecay_with_mindformers_grouping():
    cfg = OptimizerConfig(beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1)
    ours, theirs = make_params(0), make_params(0)
    opt = AdamWeightDecay(ours, cfg)
    decay = [p for p in theirs if len(p.shape) > 1]  # MindFormers: no decay on 1-D / bias
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": theirs[1:], "weight_decay": 0.0}]
    ref = nn.AdamWeightDecay(groups, learning_rate=0.01, beta1=0.8, beta2=0.95, eps=1e-6)
    rng = np.random.default_rng(1)
    for _ in range(4):
        grads = [rng.normal(size=p.shape).astype(np.float32) for p in ours]
        opt(tuple(Tensor(g) for g in grads), Tensor(0.01, ms.float32))
        ref(tuple(Tensor(g) for g in grads))
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-6, atol=1e-7)
    assert int(opt.global_step.asnumpy()) == 4
    assert [p.name for p in opt.state_parameters()][:2] == [
        "adam_m.layer.weight",
        "adam_m.layer.norm",
    ]


def test_cosine_with_warmup_reproduces_mindformers_docstring_example():
    cfg = ScheduleConfig(
        type="CosineWithWarmUpLR", learning_rate=0.005, warmup_steps=10, total_steps=20
    )
    assert learning_rate(cfg, 1, 20) == pytest.approx(0.0005)
    assert learning_rate(cfg, 15, 20) == pytest.approx(0.0025, rel=1e-6)
    assert learning_rate(cfg, 0, 20) == 0.0  # MindFormers' first step runs at warmup_lr_init
    assert learning_rate(cfg, 20, 20) == 0.0  # lr_end once decay_steps are done


def test_cosine_formula_with_warmup_ratio_lr_end_and_run_length():
    cfg = ScheduleConfig(
        type="CosineWithWarmUpLR", learning_rate=1e-3, warmup_ratio=0.25, lr_end=1e-5
    )
    assert resolve_schedule(cfg, 40) == (10, 40)  # total_steps -1: the run's length
    for step in range(10, 40):
        progress = (step - 10) / 30
        want = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * progress))
        assert learning_rate(cfg, step, 40) == pytest.approx(want, rel=1e-12)
    assert learning_rate(cfg, 5, 40) == pytest.approx(1e-3 * 5 / 10)


def test_constant_with_warmup_reproduces_mindformers_constantwarmuplr_example():
    cfg = ScheduleConfig(type="ConstantWarmUpLR", learning_rate=0.005, warmup_steps=10)
    assert learning_rate(cfg, 1, 20) == pytest.approx(0.0005)
    assert learning_rate(cfg, 15, 20) == 0.005
    with pytest.raises(MindsftError, match="warmup_ratio"):
        learning_rate(ScheduleConfig(warmup_ratio=1.5), 0, 10)

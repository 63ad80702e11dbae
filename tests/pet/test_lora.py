"""LoRA injection on real MindSpore Dense cells: names, init, formula, freezing,
and the error for a regex that matches nothing (dropout: test_dropout.py)."""

import math

import mindspore as ms
import numpy as np
import pytest
import yaml
from mindsft.errors import MindsftError
from mindsft.pet.lora import (
    LORA_A,
    LORA_B,
    LoraConfig,
    count_params,
    freeze_base,
    inject_lora,
)
from mindspore import nn


class Block(nn.Cell):
    def __init__(self):
        super().__init__()
        self.wq = nn.Dense(16, 16, has_bias=False)
        self.wo = nn.Dense(16, 16, has_bias=True)
        self.w1 = nn.Dense(16, 8, has_bias=False)

    def construct(self, x):
        return self.w1(self.wo(self.wq(x)))


class Toy(nn.Cell):
    def __init__(self):
        super().__init__()
        self.layers = nn.CellList([Block(), Block()])

    def construct(self, x):
        for layer in self.layers:
            x = layer.wo(layer.wq(x))
        return self.layers[1].w1(x)


@pytest.fixture
def toy():
    ms.set_seed(0)
    return Toy()


def x_input(shape=(3, 5, 16)):
    return ms.Tensor(np.random.default_rng(1).normal(size=shape).astype(np.float32))


def test_lora_keeps_base_names_and_adds_mindpet_matrices_beside_them(toy):
    before = {p.name: p.asnumpy().copy() for p in toy.get_parameters()}
    targets = inject_lora(toy, LoraConfig(lora_rank=4, lora_alpha=8, target_modules=".*wq|.*wo"))
    assert targets == ["layers.0.wq", "layers.0.wo", "layers.1.wq", "layers.1.wo"]
    params = {p.name: p for p in toy.get_parameters()}
    for name, value in before.items():  # every base parameter keeps its name and value
        assert np.array_equal(params[name].asnumpy(), value)
    assert params[f"layers.0.wq.{LORA_A}"].shape == (4, 16)  # (r, in)
    assert params[f"layers.1.wo.{LORA_B}"].shape == (16, 4)  # (out, r)
    assert f"layers.0.w1.{LORA_A}" not in params


def test_lora_init_is_kaiming_uniform_a_and_zero_b_so_output_is_unchanged(toy):
    x = x_input()
    y0 = toy(x).asnumpy()
    inject_lora(toy, LoraConfig(lora_rank=8, target_modules=".*wq"))
    toy.set_train(False)
    assert np.array_equal(toy(x).asnumpy(), y0)
    a = toy.layers[0].wq.mindpet_delta_lora_a.asnumpy()
    bound = 1.0 / math.sqrt(16)  # kaiming_uniform(a=sqrt(5)) on fan_in 16
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.8 * bound
    assert not toy.layers[0].wq.mindpet_delta_lora_b.asnumpy().any()


def test_lora_forward_is_base_plus_scaled_b_a(toy):
    inject_lora(toy, LoraConfig(lora_rank=2, lora_alpha=6, target_modules=r"layers\.0\.wo"))
    cell = toy.layers[0].wo
    b = np.random.default_rng(2).normal(size=(16, 2)).astype(np.float32)
    cell.mindpet_delta_lora_b.set_data(ms.Tensor(b))
    cell.set_train(False)
    x = x_input((4, 16)).asnumpy()
    w, bias, a = cell.weight.asnumpy(), cell.bias.asnumpy(), cell.mindpet_delta_lora_a.asnumpy()
    want = x @ w.T + bias + (6 / 2) * (x @ a.T) @ b.T
    np.testing.assert_allclose(cell(ms.Tensor(x)).asnumpy(), want, rtol=1e-5, atol=1e-5)


def test_freeze_leaves_only_lora_matrices_trainable_and_counts_them(toy):
    inject_lora(toy, LoraConfig(lora_rank=4, target_modules=".*wq"))
    freeze_base(toy)
    names = sorted(p.name for p in toy.trainable_params())
    assert names == sorted(f"layers.{i}.wq.{m}" for i in (0, 1) for m in (LORA_A, LORA_B))
    trainable, total = count_params(toy)
    assert trainable == 2 * (4 * 16 + 16 * 4)
    assert total == trainable + 2 * (16 * 16 + 16 * 16 + 16 + 16 * 8)


def test_regex_that_matches_nothing_names_the_modules_that_exist(toy):
    with pytest.raises(
        MindsftError, match=r"matches no Dense module.*layers\.N\.w1.*layers\.N\.wq"
    ):
        inject_lora(toy, LoraConfig(target_modules=".*q_proj"))


def test_pet_config_of_mindformers_lora_yaml_parses(mindformers_configs):
    raw = yaml.safe_load((mindformers_configs / "lora_llama2_7b.yaml").read_text())
    cfg = LoraConfig.from_pet_config(raw["model"]["model_config"]["pet_config"])
    assert (cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout) == (16, 16, 0.05)
    assert cfg.target_modules == ".*wq|.*wk|.*wv|.*wo" and cfg.scaling == 1.0
    with pytest.raises(MindsftError, match="pet_type 'prefix_tuning'"):
        LoraConfig.from_pet_config({"pet_type": "prefix_tuning"})

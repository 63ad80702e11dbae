"""The LoRA dropout owner on real MindSpore Dense cells: masks sized per module,
drawn as a pure function of (seed, step, micro-batch, rank), prefetched without
changing them, handed over as mutable step inputs, inverted dropout on the input
of A, and a prefetch thread that stops when the step raises."""

import threading

import mindspore as ms
import numpy as np
import pytest
from mindsft.pet.config import LoraConfig
from mindsft.pet.dropout import LoraDropout, draw_masks
from mindsft.pet.lora import inject_lora
from mindspore import nn


class Block(nn.Cell):
    def __init__(self):
        super().__init__()
        self.wq = nn.Dense(16, 16, has_bias=False)
        self.wo = nn.Dense(16, 8, has_bias=False)

    def construct(self, x):
        return self.wo(self.wq(x))


def lora_block(dropout=0.5, targets=".*wq|.*wo"):
    ms.set_seed(0)
    net = nn.CellList([Block(), Block()])
    inject_lora(net, LoraConfig(lora_rank=4, lora_dropout=dropout, target_modules=targets))
    return net


def mask_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("lora-masks")]


def test_masks_are_sized_per_module_and_a_pure_function_of_the_key():
    drop = LoraDropout(lora_block(), batch_size=3, seq_length=5)
    assert drop.shapes == [(15, 16)] * 4  # (B*T, in) of 0.wq, 0.wo, 1.wq, 1.wo
    assert [tuple(p.shape) for p in drop.parameters] == drop.shapes
    first, again, other = drop.draw(7), drop.draw(7), drop.draw(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    assert not np.array_equal(first[0], first[2])  # one independent mask per module
    assert drop.keep == 0.5 and first[0].dtype == np.bool_


def test_key_depends_on_seed_step_micro_batch_and_rank_and_steps_by_world_size():
    def key(step, micro, seed=3, rank=1):
        drop = LoraDropout(lora_block(), 2, 2, seed=seed, accumulation=2, world_size=4, rank=rank)
        return drop.key(step, micro)

    keys = {key(5, 0), key(5, 1), key(6, 0), key(5, 0, seed=4), key(5, 0, rank=2)}
    assert len(keys) == 5
    # the prefetch draws key + world_size: the next micro-batch, or the next step's first
    assert key(5, 1) == key(5, 0) + 4 and key(6, 0) == key(5, 1) + 4


def test_prefetched_and_in_place_draws_give_the_same_mutable_step_inputs():
    drop = LoraDropout(lora_block(), 2, 3, seed=1, accumulation=2)
    order = [(0, 0), (0, 1), (1, 0), (3, 1), (1, 1)]  # in order, then a resume, then back
    with drop:
        for step, micro in order:
            masks = drop.masks(step, micro)
            assert getattr(masks, "__ms_mutable__", False)  # a step input, not a constant
            want = drop.draw(drop.key(step, micro))
            for got, expected in zip(masks, want, strict=True):
                assert np.array_equal(got.asnumpy(), expected)


def test_a_shorter_micro_batch_keeps_each_rows_first_masks_and_resizes_the_parameters():
    drop = LoraDropout(lora_block(), batch_size=2, seq_length=5, seed=4)
    with drop:
        short = drop.masks(0, 0, length=3)
        assert getattr(short, "__ms_mutable__", False)
        assert [tuple(p.shape) for p in drop.parameters] == [(6, 16)] * 4  # (B * 3, in)
        for got, full in zip(short, drop.draw(drop.key(0, 0)), strict=True):
            want = full.reshape(2, 5, 16)[:, :3].reshape(-1, 16)  # a row's first 3 positions
            assert np.array_equal(got.asnumpy(), want)
        whole = drop.masks(0, 1)  # back to full rows: the Parameters too
        assert [tuple(m.shape) for m in whole] == [(10, 16)] * 4
        assert [tuple(p.shape) for p in drop.parameters] == [(10, 16)] * 4


def test_without_dropout_there_are_no_masks_and_no_thread():
    drop = LoraDropout(lora_block(dropout=0.0), 2, 3)
    with drop:
        assert drop.parameters == () and drop.masks(0, 0) == ()
        assert not mask_threads()


def test_prefetch_thread_stops_when_the_step_raises():
    drop = LoraDropout(lora_block(), 2, 3)
    with pytest.raises(RuntimeError, match="step failed"):
        with drop:
            drop.masks(0, 0)
            assert mask_threads()
            raise RuntimeError("step failed")
    assert not mask_threads()


def test_dropout_is_inverted_dropout_on_the_input_of_a():
    keep = draw_masks(3, [(4000, 64)], 0.9)[0]
    assert keep.dtype == np.bool_ and abs(keep.mean() - 0.9) < 0.005
    net = lora_block(dropout=0.25, targets=r"0\.wq")
    cell = net[0].wq
    drop = LoraDropout(net, 3, 4)
    b = np.random.default_rng(2).normal(size=(16, 4)).astype(np.float32)
    cell.mindpet_delta_lora_b.set_data(ms.Tensor(b))
    cell.set_train(True)
    mask = drop.draw(11)[0]
    assert mask.shape == (12, 16) and not mask.all() and mask.any()
    drop.parameters[0].set_data(ms.Tensor(mask))  # what the compiled step assigns
    x = np.random.default_rng(1).normal(size=(12, 16)).astype(np.float32)
    w, a = cell.weight.asnumpy(), cell.mindpet_delta_lora_a.asnumpy()
    want = x @ w.T + (16 / 4) * ((x * mask / 0.75) @ a.T) @ b.T
    np.testing.assert_allclose(cell(ms.Tensor(x)).asnumpy(), want, rtol=1e-5, atol=1e-5)

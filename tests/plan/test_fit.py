"""The verdict and the largest batch and seq_length flip exactly at the boundary."""

import pytest
from mindsft.models.config import LlamaConfig
from mindsft.plan.fit import largest_batch, largest_seq, peak
from mindsft.plan.memory import Step

CONFIG = LlamaConfig(
    vocab_size=32000,
    hidden_size=512,
    num_layers=4,
    num_heads=8,
    intermediate_size=1536,
    seq_length=1024,
)


@pytest.fixture
def step():
    return Step(CONFIG, batch_size=2)


def test_largest_batch_is_the_last_one_within_the_budget(step):
    exact = peak(step.with_(batch_size=3))
    assert largest_batch(step, exact) == 3
    assert largest_batch(step, exact - 1) == 2
    assert largest_batch(step, peak(step.with_(batch_size=1)) - 1) == 0


def test_largest_seq_length_is_the_last_even_one_within_the_budget(step):
    exact = peak(step.with_(seq_length=1000))
    assert largest_seq(step, exact) == 1000
    assert largest_seq(step, exact - 1) == 998


def test_peak_grows_with_batch_and_seq(step):
    assert peak(step.with_(batch_size=3)) > peak(step)
    assert peak(step.with_(seq_length=2048)) > peak(step)

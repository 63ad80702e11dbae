"""The masked causal-LM loss against torch's cross entropy on the same tokens."""

import mindspore as ms
import numpy as np
import pytest
from mindsft.models.loss import shift_for_causal_lm, token_nll_sum

torch = pytest.importorskip("torch")


def batch(seed=0, vocab=40):
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(3, vocab, (3, 9)).astype(np.int32)
    input_ids[0, -3:] = 0  # right padding
    labels = input_ids.copy()
    labels[:, :4] = -100  # prompt tokens ignored
    labels[0, -3:] = -100
    labels[2, 6] = 0  # a pad-valued target whose input is not pad still counts (MindFormers)
    logits = rng.standard_normal((3, 8, vocab)).astype(np.float32)
    return input_ids, labels, logits


def test_shift_is_mindformers_inputs_minus_last_targets_minus_first():
    ids = np.arange(10).reshape(2, 5)
    tokens, targets = shift_for_causal_lm(ids, ids + 100)
    np.testing.assert_array_equal(tokens, ids[:, :-1])
    np.testing.assert_array_equal(targets, ids[:, 1:] + 100)


def test_nll_sum_and_count_match_torch_cross_entropy_over_the_mask():
    input_ids, labels, logits = batch()
    tokens, targets = shift_for_causal_lm(input_ids, labels)
    total, count = token_nll_sum(ms.Tensor(logits), ms.Tensor(targets), ms.Tensor(tokens))
    mask = (targets != -100) & (tokens != 0)
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(logits[mask]), torch.tensor(targets[mask], dtype=torch.long), reduction="sum"
    )
    assert float(count.asnumpy()) == mask.sum()
    assert total.dtype == ms.float32
    np.testing.assert_allclose(float(total.asnumpy()), float(ref), rtol=1e-6)


def test_gradient_matches_torch():
    input_ids, labels, logits = batch(1)
    tokens, targets = shift_for_causal_lm(input_ids, labels)

    def mean_loss(x):
        total, count = token_nll_sum(x, ms.Tensor(targets), ms.Tensor(tokens))
        return total / count

    grad = ms.grad(mean_loss)(ms.Tensor(logits)).asnumpy()
    x = torch.tensor(logits, requires_grad=True)
    t = torch.tensor(np.where(tokens == 0, -100, targets), dtype=torch.long)
    torch.nn.functional.cross_entropy(
        x.reshape(-1, x.shape[-1]), t.reshape(-1), ignore_index=-100
    ).backward()
    np.testing.assert_allclose(grad, x.grad.numpy(), atol=1e-7)

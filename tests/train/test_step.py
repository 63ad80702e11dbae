"""The train step's loss and gradients on what it computes - batches cut after their
last target, logits only at trained positions, packed rows attending within each
sample - against the full computation on the same samples unpadded-to-nothing:
every position, every logit, one sample per row."""

import dataclasses

import mindspore as ms
import numpy as np
import pytest
from mindsft.data.batch import step_batch
from mindsft.models.config import LlamaConfig
from mindsft.models.llama import LlamaForCausalLM
from mindsft.models.loss import shift_for_causal_lm, token_nll_sum
from mindsft.pet.config import LoraConfig
from mindsft.pet.lora import freeze_base, inject_lora
from mindsft.train.step import TrainStep

SEQ = 256  # rows cut to 128 and packed rows of 256 both take the two-query-halves path
IGNORE = -100
CONFIG = {
    "seq_length": SEQ,
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "n_kv_heads": 2,
    "vocab_size": 512,
    "intermediate_size": 64,
}
LENGTHS = [30, 41, 1, 25, 20]  # samples; one is BOS alone (nothing to train)


def samples(seed=0):
    """(input_ids, labels) per sample: BOS, tokens, EOS; IGNORE on BOS and a prompt."""
    rng = np.random.default_rng(seed)
    out = []
    for n in LENGTHS:
        ids = np.concatenate([[1], rng.integers(3, 512, n)])[:n].astype(np.int32)
        labels = ids.copy()
        labels[: max(1, n // 3)] = IGNORE
        out.append((ids, labels))
    return out


def padded_batch(parts) -> dict:
    """One sample per row, padded (pad 0, IGNORE) to SEQ + 1."""
    ids = np.zeros((len(parts), SEQ + 1), np.int32)
    labels = np.full_like(ids, IGNORE)
    for k, (a, b) in enumerate(parts):
        ids[k, : len(a)], labels[k, : len(b)] = a, b
    return {"input_ids": ids, "labels": labels}


def packed_batch(parts) -> dict:
    """Two packed rows: the samples split after the second, boundaries beside."""
    rows = [parts[:2], parts[2:]]
    ids = np.zeros((2, SEQ + 1), np.int32)
    labels = np.full_like(ids, IGNORE)
    ends = np.empty(2, dtype=object)
    for r, row in enumerate(rows):
        ids[r, : sum(len(a) for a, _ in row)] = np.concatenate([a for a, _ in row])
        labels[r, : sum(len(b) for _, b in row)] = np.concatenate([b for _, b in row])
        ends[r] = np.cumsum([len(a) for a, _ in row]).astype(np.int32)
    return {"input_ids": ids, "labels": labels, "actual_seq_len": ends}


def model(lora: bool):
    ms.set_seed(0)
    net = LlamaForCausalLM(LlamaConfig.from_mindformers(CONFIG))
    rng = np.random.default_rng(1)
    for p in net.get_parameters():
        p.set_data(ms.Tensor(rng.normal(0.0, 0.1, p.shape).astype(np.float32)))
    if lora:
        cfg = {"pet_type": "lora", "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.0}
        inject_lora(net, LoraConfig.from_pet_config({**cfg, "target_modules": ".*wq|.*wv"}))
        freeze_base(net)
        for p in net.trainable_params():  # B is zero at injection: give the gradients of A a chance
            p.set_data(ms.Tensor(rng.normal(0.0, 0.1, p.shape).astype(np.float32)))
    net.set_train(True)
    return net


def loss_and_grads(net, fn, *args):
    grad = ms.value_and_grad(fn, None, weights=net.trainable_params(), has_aux=True)
    (total, count), grads = grad(*args)
    return float(total.asnumpy()), float(count.asnumpy()), [g.asnumpy() for g in grads]


def reference(net, batch):
    """Every position and every logit of the padded rows (MindFormers' loss as written)."""

    def fn(input_ids, labels):
        tokens, targets = shift_for_causal_lm(input_ids, labels)
        return token_nll_sum(net(tokens), targets, tokens)

    return loss_and_grads(net, fn, ms.Tensor(batch["input_ids"]), ms.Tensor(batch["labels"]))


def stepped(net, batch, **change):
    """What the train step computes on `batch`, laid out by step_batch (fields changed
    as given)."""
    step = TrainStep(net, None, net.trainable_params(), jit=False)
    layout = dataclasses.replace(step_batch(batch, 0, IGNORE), **change)
    return layout, loss_and_grads(net, step._loss_sum, *layout.tensors())


def assert_same(got, want):
    (total, count, grads), (ref_total, ref_count, ref_grads) = got, want
    assert count == ref_count
    np.testing.assert_allclose(total / count, ref_total / ref_count, rtol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * np.abs(r).max())


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_cut_selected_and_packed_batches_give_the_full_loss_and_gradients(lora):
    net = model(lora)
    parts = samples()
    want = reference(net, padded_batch(parts))
    assert want[1] == sum(int((b[1:] != IGNORE).sum()) for _, b in parts)

    padded, got = stepped(net, padded_batch(parts))
    assert padded.tokens.shape == (5, 128)  # cut from 256: the longest sample has 41 tokens
    assert padded.positions is None and padded.segments is None
    assert len(padded.index) == 128 and padded.trained == want[1] == 79  # buckets of 128 slots
    assert_same(got, want)

    packed, got = stepped(net, packed_batch(parts))
    assert packed.tokens.shape == (2, 256) and packed.segments[0, 30] == 1
    assert packed.positions[1].tolist()[:3] == [0, 0, 1]  # the BOS-only sample, then the next
    assert packed.chunks == 4  # short samples: attention over pairs of quarter rows
    assert_same(got, want)
    _, got = stepped(net, packed_batch(parts), chunks=0)  # the whole row, in two halves
    assert_same(got, want)

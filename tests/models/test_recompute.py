"""Activation recompute (`LlamaForCausalLM.recompute_layers`, MindFormers'
recompute_config.recompute): the same loss and gradients as without it, in a
compiled step and in PyNative, through both ways the model attends and its
hand-written backward passes (ScaledDotProduct, OutputProjection); and the peak of
MindSpore's memory pool drops (the CPU process's RSS need not: see plan.memory)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindsft.models.config import LlamaConfig
from mindsft.models.llama import LlamaForCausalLM
from mindsft.models.loss import token_nll_sum

ROOT = Path(__file__).resolve().parents[2]


def loss_and_grads(seq: int, recompute: bool, jit: bool, hidden=64, vocab=96, batch=2):
    """(loss, {parameter: gradient}) of a seeded tiny Llama (GQA, untied) on seeded ids."""
    ms.set_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_layers=2,
        num_heads=4,
        n_kv_heads=2,
        intermediate_size=2 * hidden + 24,
        seq_length=seq,
    )
    net = LlamaForCausalLM(config)
    if recompute:
        net.recompute_layers()
    params = net.trainable_params()

    def loss(ids):
        nll, count = token_nll_sum(net(ids), ids, ids)
        return nll / count

    grad_fn = ms.value_and_grad(loss, None, params)
    if jit:
        grad_fn = ms.jit(grad_fn)
    ids = np.random.default_rng(1).integers(3, vocab, (batch, seq)).astype(np.int32)
    value, grads = grad_fn(ms.Tensor(ids))
    return value.asnumpy(), {p.name: g.asnumpy() for p, g in zip(params, grads, strict=True)}


@pytest.mark.parametrize(
    ("seq", "jit"),
    [(33, True), (128, True), (128, False)],
    ids=["one_block-compiled", "two_query_halves-compiled", "two_query_halves-pynative"],
)
def test_recompute_gives_identical_loss_and_gradients(seq, jit):
    loss, grads = loss_and_grads(seq, recompute=False, jit=jit)
    loss_rc, grads_rc = loss_and_grads(seq, recompute=True, jit=jit)
    assert loss_rc == loss
    assert grads_rc.keys() == grads.keys()
    for name, grad in grads.items():
        np.testing.assert_array_equal(grads_rc[name], grad, err_msg=name)
    assert np.abs(grads["lm_head.weight"]).max() > 0  # OutputProjection's backward ran


POOL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_recompute import loss_and_grads
loss_and_grads(256, recompute=sys.argv[1] == "1", jit=sys.argv[2] == "1", hidden=256, vocab=256)
"""


def pool_peak(recompute: bool, jit: bool) -> int:
    """The peak of MindSpore's memory pool over one forward and backward, in MB, as
    MindSpore reports it (MS_DEV_RUNTIME_CONF memory_statistics)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "lib"),
        "MS_DEV_RUNTIME_CONF": "memory_statistics:True",
    }
    script = POOL_SCRIPT.format(tests=str(Path(__file__).parent))
    args = [sys.executable, "-c", script, str(int(recompute)), str(int(jit))]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    peaks = re.findall(r"dynamic memory pool.*?peak used mem:(\d+)M", done.stdout + done.stderr)
    assert peaks, done.stderr[-2000:]
    return int(peaks[-1])


def test_recompute_lowers_the_peak_of_mindspores_memory_pool_in_a_compiled_step():
    without, with_recompute = pool_peak(False, jit=True), pool_peak(True, jit=True)
    assert with_recompute < 0.75 * without

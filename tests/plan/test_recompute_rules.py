"""What recompute keeps, as the plan counts it: per layer its input and what the
attention core's hand-written backward reads (q, k, v, the output and the
probabilities); on the CPU backend the measured rule (the peak does not drop)."""

import pytest
from mindsft.models.config import load_config
from mindsft.pet.config import LoraConfig
from mindsft.plan.memory import (
    BACKENDS,
    RECOMPUTE_HOLDS_CPU,
    Step,
    layer_scores,
    layer_tokens,
    plan_step,
    recompute_kept,
)


@pytest.fixture(scope="module")
def lora_7b(mindformers_configs):
    config = load_config(mindformers_configs / "lora_llama2_7b.yaml")
    return Step(config, LoraConfig(lora_rank=16, lora_dropout=0.05), batch_size=1)


def test_a_recomputed_layer_keeps_its_input_and_the_attention_cores_tensors(lora_7b):
    n, d = 4096, 4096  # tokens, hidden
    qkvo = layer_tokens(lora_7b, 0)["attention q, k, v, output"]
    assert qkvo == n * (2 * d + 3 * d) * 2  # q and output, k and v (1.5x: the halves' concat)
    probs = layer_scores(lora_7b)
    assert probs == 32 * 4096 * 4096 * 3 // 4 * 2  # (B, H, T, T) bf16, 3/4 in two halves
    assert recompute_kept(lora_7b, 0) == n * d * 2 + qkvo + probs


def test_recompute_keeps_every_layers_share_and_rebuilds_one_layer(lora_7b):
    b = plan_step(lora_7b.with_(recompute=True))
    assert b.moment == "backward pass, last layer rebuilt"
    kept = 32 * recompute_kept(lora_7b, 0)
    assert kept < b.activations["with recompute"] < kept + 2 * b.per_layer + 2**31


def test_on_the_cpu_recompute_holds_the_measured_share_of_the_activations(lora_7b):
    cpu = lora_7b.with_(backend=BACKENDS["CPU"])
    without = plan_step(cpu).activations["without recompute"]
    assert plan_step(cpu).activations["with recompute"] == int(RECOMPUTE_HOLDS_CPU * without)
    assert plan_step(cpu.with_(recompute=True)).total >= plan_step(cpu).total

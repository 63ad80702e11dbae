"""The plan's arithmetic on known shapes: Llama-2-7B from MindFormers' own YAMLs."""

import pytest
from mindsft.models.config import LlamaConfig
from mindsft.plan.memory import (
    BACKENDS,
    HALVES_MIN,
    Step,
    backend_for,
    layer_scores,
    plan_step,
    score_fraction,
)
from mindsft.train.config import load_finetune_config

P_7B = 6_738_415_616


@pytest.fixture(scope="module")
def full_7b(mindformers_configs):
    cfg = load_finetune_config(mindformers_configs / "finetune_llama2_7b.yaml")
    return Step(LlamaConfig.from_mindformers(cfg.model_config), batch_size=1)


@pytest.fixture(scope="module")
def lora_7b(mindformers_configs):
    cfg = load_finetune_config(mindformers_configs / "lora_llama2_7b.yaml")
    return Step(LlamaConfig.from_mindformers(cfg.model_config), cfg.lora, batch_size=2)


def test_full_fine_tuning_holds_16_bytes_per_parameter_before_activations(full_7b):
    b = plan_step(full_7b)
    assert b.parts["weights (float32)"] == 4 * P_7B
    assert b.parts["optimizer states (Adam m, v)"] == 8 * P_7B
    assert b.gradients_total == 4 * P_7B
    assert b.parts["weights cast to bfloat16"] == 2 * (P_7B - 32000 * 4096 - 65 * 4096)


def test_the_parts_add_up_to_the_peak(full_7b, lora_7b):
    for step in (full_7b, lora_7b, full_7b.with_(recompute=True)):
        b = plan_step(step)
        assert sum(b.parts.values()) == b.total


def test_lora_keeps_the_base_frozen_and_trains_16_7m_parameters(lora_7b):
    b = plan_step(lora_7b)
    assert b.parts["weights (float32, frozen)"] == 4 * P_7B
    assert b.parts["LoRA A, B + Adam m, v"] == 3 * 4 * 16_777_216
    assert b.gradients_total == 4 * 16_777_216
    assert "optimizer states (Adam m, v)" not in b.parts
    # bool (B*T, in) dropout masks: the Parameters and the step's inputs
    assert b.parts["LoRA dropout masks"] == 2 * (2 * 4096) * (32 * 4 * 4096)


def test_attention_probabilities_are_b_h_t_t_in_the_compute_dtype(lora_7b):
    assert layer_scores(lora_7b) == 2 * 32 * 4096 * 4096 * 3 // 4 * 2  # two query halves
    assert layer_scores(lora_7b.with_(seq_length=2048)) * 4 == layer_scores(lora_7b)


def test_the_two_query_halves_rule_is_the_models():
    from mindsft.models.llama import HALVES_MIN as MODEL_HALVES_MIN

    assert HALVES_MIN == MODEL_HALVES_MIN
    assert score_fraction(2 * HALVES_MIN) == 0.75
    assert score_fraction(2 * HALVES_MIN - 2) == 1.0
    assert score_fraction(4097) == 1.0


def test_recompute_lowers_activations_and_the_peak(full_7b, lora_7b):
    for step in (full_7b, lora_7b):
        b = plan_step(step)
        assert b.activations["with recompute"] < 0.7 * b.activations["without recompute"]
        assert plan_step(step.with_(recompute=True)).total < b.total


def test_activations_grow_with_layers_batch_and_sequence(lora_7b):
    base = plan_step(lora_7b).activations["without recompute"]
    for bigger in (lora_7b.with_(batch_size=3), lora_7b.with_(seq_length=5000)):
        assert plan_step(bigger).activations["without recompute"] > base


def test_lora_without_dropout_keeps_fewer_activations_than_full(full_7b, lora_7b):
    no_dropout = lora_7b.with_(lora=lora_7b.lora.__class__(lora_rank=16, lora_dropout=0.0))
    full = full_7b.with_(batch_size=2)
    assert plan_step(no_dropout).per_layer < plan_step(full).per_layer


def test_optimizer_sharding_splits_weights_gradients_and_states(full_7b):
    sharded = plan_step(full_7b.with_(shard=8))
    vectors = 65 * 4096  # the RMSNorm weights stay whole (under the 64 KB threshold)
    weights = (P_7B - vectors) * 4 // 8 + vectors * 4
    assert sharded.parts["weights (float32)"] == weights
    assert sharded.parts["optimizer states (Adam m, v)"] == 2 * weights
    assert sharded.gradients_total == weights
    assert sharded.total < plan_step(full_7b).total


def test_cpu_backend_factors_are_the_measured_ones(lora_7b):
    assert backend_for("CPU") is BACKENDS["CPU"]
    assert backend_for("Ascend") is backend_for("GPU") is BACKENDS["Ascend"]
    ascend = plan_step(lora_7b).activations["without recompute"]
    cpu = plan_step(lora_7b.with_(backend=BACKENDS["CPU"])).activations["without recompute"]
    assert cpu > ascend


def test_both_transients_are_reported_and_the_peak_holds_one(lora_7b):
    b = plan_step(lora_7b)
    assert set(b.transients) == {"logits and loss", "workspace"}
    assert b.transients["logits and loss"] == 3 * (2 * 4096) * 32000 * 4 + (2 * 4096) * 32000 * 2
    held = [k for k in b.transients if k in b.parts]
    assert len(held) == 1 and b.parts[held[0]] == b.transients[held[0]]

"""Parameter counts from the shapes, checked against known models and against the
real MindSpore model."""

import pytest
from mindsft.errors import MindsftError
from mindsft.models.config import LlamaConfig
from mindsft.pet.config import LoraConfig
from mindsft.plan.shapes import count_parameters, dense_shapes, lora_targets, parameter_shapes
from mindsft.train.config import load_finetune_config

TINY = LlamaConfig(
    vocab_size=96,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    n_kv_heads=2,
    intermediate_size=48,
    seq_length=16,
)


def llama2_7b(mindformers_configs, name="finetune_llama2_7b.yaml"):
    cfg = load_finetune_config(mindformers_configs / name)
    return LlamaConfig.from_mindformers(cfg.model_config), cfg.lora


def test_llama2_7b_from_mindformers_yaml_has_its_known_parameter_count(mindformers_configs):
    config, _ = llama2_7b(mindformers_configs)
    counts = count_parameters(config)
    assert counts.total == 6_738_415_616
    assert counts.trainable == counts.total
    assert counts.largest == 32000 * 4096  # the embedding and the output layer


def test_lora_rank_16_on_q_k_v_o_of_llama2_7b_adds_16_7m_parameters(mindformers_configs):
    config, lora = llama2_7b(mindformers_configs, "lora_llama2_7b.yaml")
    assert lora.lora_rank == 16
    counts = count_parameters(config, lora)
    assert counts.lora == 32 * 4 * 16 * (4096 + 4096) == 16_777_216
    assert counts.trainable == counts.lora
    assert counts.lora_inputs == 32 * 4 * 4096


def test_shapes_and_dense_layers_match_the_mindspore_model():
    import mindspore as ms
    from mindsft.models.llama import LlamaForCausalLM
    from mindsft.pet.lora import dense_paths

    net = LlamaForCausalLM(TINY)
    real = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
    assert parameter_shapes(TINY) == real
    assert sorted(dense_shapes(TINY)) == sorted(dense_paths(net))
    assert all(isinstance(p, ms.Parameter) for p in net.get_parameters())


def test_lora_targets_match_what_inject_lora_wraps():
    from mindsft.models.llama import LlamaForCausalLM
    from mindsft.pet.lora import count_params, inject_lora

    lora = LoraConfig(lora_rank=4, target_modules=r".*wq|.*w2|lm_head")
    net = LlamaForCausalLM(TINY)
    wrapped = inject_lora(net, lora)
    assert sorted(lora_targets(TINY, lora)) == sorted(wrapped)
    trainable_after_freeze = count_params(net)[1] - count_parameters(TINY).total
    assert count_parameters(TINY, lora).lora == trainable_after_freeze


def test_a_target_regex_matching_nothing_names_the_modules():
    with pytest.raises(MindsftError, match=r"matches no Dense module.*attention\.wq"):
        lora_targets(TINY, LoraConfig(target_modules=".*q_proj"))

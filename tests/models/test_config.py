"""LlamaConfig from HF config.json and MindFormers YAMLs."""

import json

import pytest
import yaml
from mindsft.errors import MindsftError
from mindsft.models.config import LlamaConfig, load_config, mindformers_ffn_size


def test_mindformers_llama2_7b_yaml_gives_the_llama2_7b_shape(mindformers_configs):
    config = load_config(mindformers_configs / "finetune_llama2_7b.yaml")
    assert (config.hidden_size, config.num_layers, config.num_heads, config.n_kv_heads) == (
        4096,
        32,
        32,
        32,
    )
    assert config.intermediate_size == 11008  # derived from multiple_of 256, as MindFormers does
    assert (config.vocab_size, config.seq_length, config.compute_dtype) == (32000, 4096, "bfloat16")
    assert (
        config.pad_token_id,
        config.bos_token_id,
        config.eos_token_id,
        config.ignore_token_id,
    ) == (0, 1, 2, -100)
    assert config.rope_theta == 10000.0 and config.rms_norm_eps == 1e-5


def test_ffn_size_follows_mindformers_rule_with_a_multiplier():
    # Llama 3 8B in MindFormers: hidden 4096, multiple_of 256, ffn_dim_multiplier 1.3 -> 14336
    assert mindformers_ffn_size(4096, 256, 1.3) == 14336
    # Llama 2 70B: hidden 8192, multiple_of 4096, ffn_dim_multiplier 1.3 -> 28672
    assert mindformers_ffn_size(8192, 4096, 1.3) == 28672
    mc = {
        "hidden_size": 64,
        "num_layers": 1,
        "num_heads": 4,
        "vocab_size": 10,
        "intermediate_size": 99,
    }
    assert (
        LlamaConfig.from_mindformers({**mc, "multiple_of": 32}).intermediate_size == 99
    )  # explicit wins


def test_hf_config_json_round_trips_through_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = transformers.LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=172,
        max_position_embeddings=256,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        torch_dtype="float16",
    )
    hf.save_pretrained(tmp_path)
    config = load_config(tmp_path)  # the folder
    assert config == load_config(tmp_path / "config.json")
    assert (config.num_heads, config.n_kv_heads, config.intermediate_size) == (8, 2, 172)
    assert (config.rope_theta, config.seq_length, config.tie_word_embeddings) == (
        500000.0,
        256,
        True,
    )
    assert (
        config.compute_dtype == "float32"
    )  # torch_dtype says how weights are stored, not how to compute
    back = transformers.LlamaConfig(**config.to_hf_dict())
    assert (back.num_key_value_heads, back.intermediate_size, back.vocab_size) == (2, 172, 300)
    assert LlamaConfig.from_hf(config.to_hf_dict()) == config


def test_to_dict_is_a_mindformers_model_config_that_reads_back(tmp_path):
    config = LlamaConfig(
        vocab_size=500,
        hidden_size=96,
        num_layers=2,
        num_heads=6,
        n_kv_heads=3,
        intermediate_size=200,
        seq_length=128,
        compute_dtype="fp16",
    )
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": {"model_config": config.to_dict()}}))
    assert load_config(path) == config
    assert config.compute_dtype == "float16"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"vocab_size": 10, "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 4},
            "num_hidden_layers",
        ),
        (
            {
                "vocab_size": 0,
                "hidden_size": 8,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 4,
            },
            "field 'vocab_size' is missing or not a positive integer",
        ),
        (
            {
                "vocab_size": 10,
                "hidden_size": 8,
                "num_hidden_layers": 1,
                "num_attention_heads": 3,
                "intermediate_size": 4,
            },
            "multiple of num_heads",
        ),
        (
            {
                "vocab_size": 10,
                "hidden_size": 8,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 4,
                "rope_scaling": {"rope_type": "yarn", "factor": 4.0},
            },
            "rope scaling",
        ),
    ],
)
def test_bad_hf_config_is_one_line_naming_the_problem(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    with pytest.raises(MindsftError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_bad_yaml_and_dtype_are_refused(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("runner_config: {epochs: 1}\n")
    with pytest.raises(MindsftError, match="model.model_config"):
        load_config(path)
    mc = {
        "hidden_size": 64,
        "num_layers": 1,
        "num_heads": 4,
        "vocab_size": 10,
        "compute_dtype": "int8",
    }
    with pytest.raises(MindsftError, match="int8"):
        LlamaConfig.from_mindformers(mc)
    with pytest.raises(MindsftError, match="absent.yaml: YAML file not found"):
        load_config(tmp_path / "absent.yaml")

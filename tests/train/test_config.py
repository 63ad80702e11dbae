"""Finetune YAML parsing: MindFormers' own Llama2-7B YAMLs as handed over, our
shipped configs, unknown names, and result-changing keys reported by name."""

from pathlib import Path

import pytest
import yaml
from mindsft.errors import MindsftError
from mindsft.train.config import load_finetune_config, parse_finetune_config

CONFIGS = Path(__file__).resolve().parents[2] / "config" / "finetune"


def test_mindformers_lora_yaml_parses_with_every_key_accounted_for(mindformers_configs):
    cfg = load_finetune_config(mindformers_configs / "lora_llama2_7b.yaml")
    assert cfg.lora.lora_rank == 16 and cfg.lora.target_modules == ".*wq|.*wk|.*wv|.*wo"
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.seed) == (2, 2, 0)
    assert cfg.train.max_grad_norm == 1.0  # runner_wrapper.use_clip_grad
    assert (cfg.train.prefix, cfg.train.save_checkpoint_steps) == ("llama_7b_lora", 100)
    assert cfg.optimizer.type == "FP32StateAdamWeightDecay" and cfg.optimizer.eps == 1e-8
    assert (cfg.schedule.type, cfg.schedule.warmup_ratio, cfg.schedule.total_steps) == (
        "CosineWithWarmUpLR",
        0.03,
        -1,
    )
    assert cfg.model_config["hidden_size"] == 4096 and "pet_config" not in cfg.model_config
    assert cfg.unsupported == []


def test_mindformers_full_yaml_parses(mindformers_configs):
    cfg = load_finetune_config(mindformers_configs / "finetune_llama2_7b.yaml")
    assert cfg.lora is None and cfg.schedule.learning_rate == 1e-6 and cfg.train.batch_size == 1
    # its DynamicLossScaleUpdateCell (skips fp16 overflow steps) is reported, not silently dropped
    assert "runner_wrapper.scale_sense.type='DynamicLossScaleUpdateCell'" in cfg.unsupported


@pytest.mark.parametrize("name", ["tiny_full", "tiny_lora", "finetune_llama2_7b", "lora_llama2_7b"])
def test_shipped_configs_parse_without_unsupported_keys(name):
    cfg = load_finetune_config(CONFIGS / f"{name}.yaml")
    assert cfg.unsupported == []
    assert (cfg.lora is not None) == ("lora" in name)


def test_result_changing_keys_mindsft_lacks_are_reported_by_name(mindformers_configs):
    raw = yaml.safe_load((mindformers_configs / "lora_llama2_7b.yaml").read_text())
    raw["micro_batch_interleave_num"] = 2
    raw["layer_scale"] = True
    raw["parallel_config"]["pipeline_stage"] = 2
    raw["model"]["model_config"]["extend_method"] = "NTK"
    raw["runner_config"]["new_trick"] = 3
    cfg = parse_finetune_config(raw, "lora.yaml")
    assert sorted(cfg.unsupported) == [
        "layer_scale=True",
        "micro_batch_interleave_num=2",
        "model.model_config.extend_method='NTK'",
        "parallel_config.pipeline_stage=2",
        "runner_config.new_trick=3",
    ]


@pytest.mark.parametrize(
    "block, key, value, message",
    [
        ("optimizer", "type", "Lamb", "optimizer.type 'Lamb' is unknown"),
        ("lr_schedule", "type", "PolyLR", "lr_schedule.type 'PolyLR' is unknown"),
        ("runner_config", "epochs", "two", "runner_config.epochs: cannot read 'two'"),
    ],
)
def test_bad_names_and_values_are_one_line_errors(mindformers_configs, block, key, value, message):
    raw = yaml.safe_load((mindformers_configs / "lora_llama2_7b.yaml").read_text())
    raw[block][key] = value
    with pytest.raises(MindsftError, match=message):
        parse_finetune_config(raw, "x.yaml")


def test_missing_model_config_is_an_error(tmp_path):
    (tmp_path / "c.yaml").write_text("runner_config: {epochs: 1}\n")
    with pytest.raises(MindsftError, match="model.model_config is missing"):
        load_finetune_config(tmp_path / "c.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n- b\n", r"c\.yaml: expected a mapping at the top level"),
        ("model: [unclosed\n", r"c\.yaml: not valid YAML"),
    ],
)
def test_unreadable_yaml_is_one_line_naming_the_file(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(MindsftError, match=message) as err:
        load_finetune_config(tmp_path / "c.yaml")
    assert "\n" not in str(err.value)
    with pytest.raises(MindsftError, match=r"absent\.yaml: YAML file not found"):
        load_finetune_config(tmp_path / "absent.yaml")

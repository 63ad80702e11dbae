"""Finetune YAML parsing: MindFormers' own Llama2-7B YAMLs as handed over, our
shipped configs, unknown names, and result-changing keys reported by name."""

from pathlib import Path

import pytest
import yaml
from mindsft.cli import main
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
        (
            "runner_config",
            "epochs",
            "two",
            "x.yaml: runner_config.epochs: expected a positive integer, got 'two'",
        ),
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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"context": {"mode": "graph"}},
            "context.mode: expected 0 (GRAPH_MODE) or 1 (PYNATIVE_MODE), got 'graph'",
        ),
        (
            {"model.model_config.hidden_size": "64"},
            "model.model_config.hidden_size: expected a positive integer, got '64'",
        ),
        (
            {"callbacks": {"type": "CheckpointMonitor"}},
            "callbacks: expected a list of mappings, got a mapping",
        ),
        ({"runner_config": 5}, "runner_config: expected a mapping, got 5"),
        ({"optimizer.learning_rate": True}, "optimizer.learning_rate: expected a number, got true"),
        (
            {"runner_config.epochs": 1.9},
            "runner_config.epochs: expected a positive integer, got 1.9",
        ),
        (
            {"runner_config.epohcs": 2},
            "runner_config.epohcs: unknown key; did you mean runner_config.epochs?",
        ),
        (
            {"lr_schedule.warmup_ratio": 3},
            "lr_schedule.warmup_ratio: expected a number in [0, 1] or null, got 3",
        ),
        (
            {"model.model_config.pet_config.lora_rnak": 8},
            "model.model_config.pet_config.lora_rnak: unknown key; did you mean "
            "model.model_config.pet_config.lora_rank?",
        ),
    ],
)
def test_the_finetune_command_refuses_a_value_of_the_wrong_kind_naming_the_key(
    tmp_path, capsys, mindformers_configs, change, message
):
    raw = yaml.safe_load((mindformers_configs / "lora_llama2_7b.yaml").read_text())
    for dotted, value in change.items():
        *parents, key = dotted.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[key] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    argv = ["finetune", "--config", str(path), "--train_dataset_dir", "d", "--load_checkpoint"]
    assert main([*argv, "b.ckpt", "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mindsft finetune: error: {path}: {message}"
    assert list(tmp_path.iterdir()) == [path]


def test_a_near_miss_of_a_callback_key_says_which_was_meant(mindformers_configs):
    raw = yaml.safe_load((mindformers_configs / "lora_llama2_7b.yaml").read_text())
    monitor = next(cb for cb in raw["callbacks"] if cb["type"] == "CheckpointMonitor")
    monitor["save_checkpoint_step"] = monitor.pop("save_checkpoint_steps")
    with pytest.raises(MindsftError) as err:
        parse_finetune_config(raw, "c.yaml")
    assert str(err.value) == (
        "c.yaml: callbacks.CheckpointMonitor.save_checkpoint_step: unknown key; did you mean "
        "callbacks.CheckpointMonitor.save_checkpoint_steps?"
    )


def test_mindformers_keys_mindsft_lacks_are_listed_not_taken_for_typos(mindformers_configs):
    raw = yaml.safe_load((mindformers_configs / "lora_llama2_7b.yaml").read_text())
    raw["optimizer"]["betas"] = [0.9, 0.95]  # AdamW's, beside beta1/beta2
    raw["runner_config"]["initial_epoch"] = 1
    cfg = parse_finetune_config(raw, "c.yaml")
    assert cfg.unsupported == ["runner_config.initial_epoch=1", "optimizer.betas=[0.9, 0.95]"]


def test_the_pretrain_yaml_loads_and_numbers_without_a_dot_are_numbers(
    tmp_path, mindformers_configs
):
    cfg = load_finetune_config(mindformers_configs / "pretrain_llama2_7b.yaml")
    assert cfg.train.gradient_accumulation_steps == 8
    text = (mindformers_configs / "lora_llama2_7b.yaml").read_text()
    (tmp_path / "c.yaml").write_text(text.replace("learning_rate: 1.e-5", "learning_rate: 1e-5"))
    assert load_finetune_config(tmp_path / "c.yaml").optimizer.learning_rate == 1e-5

"""`mindsft plan` as a user runs it: MindFormers' own YAMLs, the JSON it writes,
and bad input as one line with exit status 2 and no output file."""

import json
import subprocess
import sys

import pytest
import yaml


def plan(*argv):
    return subprocess.run(
        [sys.executable, "-m", "mindsft.cli", "plan", *map(str, argv)],
        capture_output=True,
        text=True,
    )


def fails(result, *parts):
    assert result.returncode == 2, result.stdout + result.stderr
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mindsft plan: error: ")
    for part in parts:
        assert part in err, err
    return err


@pytest.fixture
def lora_yaml(mindformers_configs, tmp_path):
    """MindFormers' LoRA YAML as a dict, and a writer for edited copies."""
    raw = yaml.safe_load((mindformers_configs / "lora_llama2_7b.yaml").read_text())

    def write(edit):
        edit(raw)
        path = tmp_path / "edited.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    return write


@pytest.mark.parametrize("name", ["lora_llama2_7b.yaml", "finetune_llama2_7b.yaml"])
def test_mindformers_yamls_get_a_plan_and_a_json_file(mindformers_configs, tmp_path, name):
    out = tmp_path / "plan.json"
    result = plan(
        "--config", mindformers_configs / name, "--device_memory", "64GB", "--output", out
    )
    assert result.returncode == 0, result.stderr
    assert "verdict: DOES NOT FIT" in result.stdout  # pure data parallel at seq 4096
    assert "with recompute" in result.stdout
    doc = json.loads(out.read_text())
    assert doc["device_memory_bytes"] == 64 * 1024**3
    assert doc["model"]["parameters"] == 6_738_415_616
    assert doc["verdict"]["fits"] is False
    assert sum(doc["peak"]["parts"].values()) == doc["peak"]["total_bytes"]
    assert doc["scenarios"][0] == doc["verdict"]
    assert "parallel.enable_parallel_optimizer=True" in " ".join(doc["not_implemented"])
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_device_memory_defaults_to_the_yamls_max_device_memory(mindformers_configs, tmp_path):
    out = tmp_path / "plan.json"
    assert (
        plan("--config", mindformers_configs / "lora_llama2_7b.yaml", "--output", out).returncode
        == 0
    )
    assert json.loads(out.read_text())["device_memory_bytes"] == 59 * 1024**3


def test_overrides_change_the_run(mindformers_configs, tmp_path):
    out = tmp_path / "plan.json"
    args = ["--seq_length", 512, "--batch_size", 1, "--recompute", "True", "--devices", 4]
    result = plan("--config", mindformers_configs / "lora_llama2_7b.yaml", *args, "--output", out)
    assert result.returncode == 0, result.stderr
    run = json.loads(out.read_text())["run"]
    assert (run["seq_length"], run["batch_size"], run["recompute"], run["devices"]) == (
        512,
        1,
        True,
        4,
    )


def test_an_unknown_memory_unit_is_one_line(mindformers_configs, tmp_path):
    out = tmp_path / "plan.json"
    config = mindformers_configs / "lora_llama2_7b.yaml"
    fails(plan("--config", config, "--device_memory", "64XB", "--output", out), "unknown unit 'XB'")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_an_output_that_cannot_be_written_is_one_line_before_any_plan(
    mindformers_configs, tmp_path
):
    out = tmp_path / "missing" / "plan.json"
    (tmp_path / "missing").write_text("a file, not a folder")
    config = mindformers_configs / "lora_llama2_7b.yaml"
    fails(plan("--config", config, "--output", out), f"{out}: cannot write")
    assert plan("--config", config, "--output", out).stdout == ""


def test_an_unknown_unit_in_the_yaml_names_the_key(lora_yaml):
    path = lora_yaml(lambda raw: raw["context"].update(max_device_memory="58XB"))
    fails(plan("--config", path), "context.max_device_memory", "unknown unit 'XB'")


def test_a_model_section_missing_a_key_names_it(lora_yaml):
    path = lora_yaml(lambda raw: raw["model"]["model_config"].pop("num_heads"))
    fails(plan("--config", path), "model_config", "'num_heads' is missing")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("hidden_size", "4096", "model.model_config.hidden_size: expected a positive integer"),
        ("num_layers", 0, "model.model_config.num_layers: expected a positive integer"),
        ("seq_length", 4096.5, "model.model_config.seq_length: expected a positive integer"),
        ("multiple_of", True, "model.model_config.multiple_of: expected a positive integer"),
    ],
)
def test_wrong_typed_model_values_are_one_line(lora_yaml, key, value, expected):
    path = lora_yaml(lambda raw: raw["model"]["model_config"].update({key: value}))
    fails(plan("--config", path), expected)


@pytest.mark.parametrize(
    "key, value",
    [("recompute", "yes"), ("recompute", 1), ("select_recompute", "all"), ("mp_comm_recompute", 0)],
)
def test_recompute_keys_with_wrong_types_are_one_line(lora_yaml, key, value):
    path = lora_yaml(lambda raw: raw["recompute_config"].update({key: value}))
    fails(plan("--config", path), f"recompute_config.{key}: expected")


def test_selective_recompute_is_listed_as_not_implemented(lora_yaml, tmp_path):
    path = lora_yaml(lambda raw: raw["recompute_config"].update(select_recompute=True))
    out = tmp_path / "plan.json"
    assert plan("--config", path, "--output", out).returncode == 0
    assert (
        "recompute_config.select_recompute=True" in json.loads(out.read_text())["not_implemented"]
    )


@pytest.mark.parametrize(
    "argv, expected",
    [(["--batch_size", 0], "--batch_size: must be at least 1"), (["--devices", 0], "--devices")],
)
def test_nonsense_overrides_are_one_line(mindformers_configs, argv, expected):
    fails(plan("--config", mindformers_configs / "lora_llama2_7b.yaml", *argv), expected)


def test_planning_does_not_import_mindspore(mindformers_configs):
    code = (
        "import sys; from mindsft.plan.planner import make_plan; "
        f"make_plan({str(mindformers_configs / 'lora_llama2_7b.yaml')!r}, device_memory='64GB'); "
        "print('mindspore' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr

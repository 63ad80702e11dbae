"""The memory plan at launch (mindsft.plan.launch): a training run prints it on
rank 0 and refuses to start, in one line and before building anything, when a
declared device memory (--device_memory, context.max_device_memory) is too small
for the plan, unless --check_memory False; and recompute_config.recompute trains
the same losses."""

from pathlib import Path

import pytest
import yaml
from mindsft.cli import main

ROOT = Path(__file__).resolve().parents[2]
LORA_7B = ROOT / "config" / "finetune" / "lora_llama2_7b.yaml"


@pytest.fixture
def inputs(tmp_path, make_base_checkpoint, make_mindrecord):
    return make_base_checkpoint(tmp_path / "base.ckpt"), make_mindrecord(tmp_path / "d.mindrecord")


def train(command, config, inputs, out, *extra) -> int:
    base, data = inputs
    argv = [command, "--config", config, "--train_dataset_dir", data, "--load_checkpoint", base]
    argv += ["--output_dir", out, *extra]
    if command == "run":
        argv += ["--run_mode", "finetune"]
    return main([str(a) for a in argv])


def edit(path: Path, section: str, **values) -> Path:
    raw = yaml.safe_load(path.read_text())
    raw.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_run_prints_its_plan_and_starts_anyway_with_check_memory_false(
    tmp_path, capsys, inputs, finetune_yaml
):
    config = finetune_yaml(tmp_path / "full.yaml")
    out = tmp_path / "run"
    extra = ["--device_memory", "1MB", "--check_memory", "False", "--num_samples", 2]
    assert train("finetune", config, inputs, out, *extra) == 0
    err = capsys.readouterr().err
    assert "memory plan (CPU): full fine-tuning" in err
    assert "per device at the peak" in err and "DOES NOT FIT" in err
    assert "starting anyway (--check_memory False)" in err
    assert (out / "loss.jsonl").read_text().strip()


@pytest.mark.parametrize("command", ["finetune", "run"])
def test_a_run_that_does_not_fit_its_declared_memory_refuses_in_one_line(
    tmp_path, capsys, inputs, finetune_yaml, command
):
    config = finetune_yaml(tmp_path / "lora.yaml", lora={"lora_dropout": 0.05})
    edit(config, "context", max_device_memory="2MB")
    out = tmp_path / "run"
    assert train(command, config, inputs, out) == 2
    line = one_error_line(capsys)
    assert "does not fit: the memory plan needs" in line
    assert "2.0 MiB available (context.max_device_memory, CPU plan)" in line
    assert "--check_memory False starts it anyway" in line
    assert not (out / "loss.jsonl").exists() and not (out / "checkpoint").exists()


def test_mindformers_7b_lora_yaml_refuses_on_this_machine(tmp_path, capsys, inputs):
    assert train("finetune", LORA_7B, inputs, tmp_path / "run") == 2
    line = one_error_line(capsys)
    assert "lora_llama2_7b.yaml: does not fit" in line and "59.0 GiB available" in line


def test_an_unknown_device_memory_unit_is_one_line(tmp_path, capsys, inputs, finetune_yaml):
    config = finetune_yaml(tmp_path / "full.yaml")
    assert train("finetune", config, inputs, tmp_path / "run", "--device_memory", "64XB") == 2
    assert "--device_memory: unknown unit 'XB' in '64XB'" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("key", "value"), [("recompute", "yes"), ("select_recompute", 2), ("mp_comm_recompute", None)]
)
def test_recompute_keys_with_wrong_types_are_one_line(
    tmp_path, capsys, inputs, finetune_yaml, key, value
):
    config = edit(finetune_yaml(tmp_path / "full.yaml"), "recompute_config", **{key: value})
    if value is None:  # null keeps the default; a mapping where a flag belongs does not
        edit(config, "recompute_config", recompute={"on": True})
        key = "recompute"
    assert train("finetune", config, inputs, tmp_path / "run") == 2
    assert f"recompute_config.{key}: expected" in one_error_line(capsys)


def test_recompute_trains_the_same_losses_with_lora_dropout(
    tmp_path, inputs, finetune_yaml, read_losses
):
    losses = {}
    for recompute in (False, True):
        config = finetune_yaml(tmp_path / f"{recompute}.yaml", lora={"lora_dropout": 0.1})
        edit(config, "recompute_config", recompute=recompute)
        out = tmp_path / f"run_{recompute}"
        assert train("finetune", config, inputs, out, "--num_samples", 4) == 0
        losses[recompute] = [r["loss"] for r in read_losses(out)]
    assert len(losses[True]) == 2 and losses[True] == losses[False]

"""Every command of MindFormers' SFT guide, run as written with mindsft's names
for the scripts (`python run_mindformer.py` -> `mindsft run`, ...) and the tiny
demo model and its data for the 7B paths and sizes, in the guide's order, from a
folder laid out as the guide's: `{path}` is that folder, `configs/llama2/*.yaml`
are MindFormers' own YAMLs scaled down to the tiny shape."""

import json
import shlex
import shutil

import mindspore as ms
import pytest
import yaml
from mindsft.cli import main
from mindsft.models.config import LlamaConfig

SEQ = 256  # the guide's 4096; every tiny demo record fits
RECORDS = 8  # the guide's alpaca_data.json: 52k records
WORKERS = "2"  # the guide's 8 devices
SCRIPTS = {
    "python run_mindformer.py": "mindsft run",
    "python convert_weight.py": "mindsft convert-weight",
    "python alpaca_converter.py": "mindsft alpaca-converter",
    "python llama_preprocess.py": "mindsft preprocess",
    "bash scripts/msrun_launcher.sh": "mindsft msrun-launcher",
}
# the guide's commands in order: the script each begins with
STEPS = [
    pytest.param(0, "python convert_weight.py", id="convert_weight"),
    pytest.param(1, "python alpaca_converter.py", id="alpaca_converter"),
    pytest.param(2, "python llama_preprocess.py", id="llama_preprocess"),
    pytest.param(3, "python run_mindformer.py", id="finetune_one_process"),
    pytest.param(4, "bash scripts/msrun_launcher.sh", id="finetune_msrun"),
    pytest.param(5, "bash scripts/msrun_launcher.sh", id="lora_msrun"),
    pytest.param(6, "bash scripts/msrun_launcher.sh", id="lora_msrun_from_dir"),
]


def tiny_yaml(source, tiny_dir, target) -> None:
    """MindFormers' 7B YAML with the tiny model's shape and CPU-sized settings."""
    raw = yaml.safe_load(source.read_text())
    shape = LlamaConfig.from_hf(tiny_dir).to_dict()
    shape.update(seq_length=SEQ, compute_dtype="float32")
    raw["model"]["model_config"].update(shape, param_init_type="float32")
    raw["runner_config"].update(epochs=1, batch_size=4)
    raw["context"]["device_target"] = "CPU"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def guide(tmp_path_factory, mindformers_configs):
    """The guide's {path}: the tiny model's HF folder, its alpaca data as
    alpaca_data.json, configs/llama2/ with the scaled-down YAMLs."""
    root = tmp_path_factory.mktemp("guide")
    assert main(["make-tiny-model", "--output_dir", str(root / "tiny"), "--seed", "0"]) == 0
    records = json.loads((root / "tiny/alpaca_demo.json").read_text())[:RECORDS]
    (root / "alpaca_data.json").write_text(json.dumps(records))
    shutil.copy(root / "tiny/tokenizer.model", root / "tokenizer.model")
    for name in ("finetune_llama2_7b.yaml", "lora_llama2_7b.yaml"):
        tiny_yaml(mindformers_configs / name, root / "tiny", root / "configs/llama2" / name)
    return root


def as_mindsft(command: str, root) -> list:
    """The guide's command as mindsft's argv: scripts renamed, paths and sizes tiny."""
    for script, ours in SCRIPTS.items():
        command = command.replace(script, ours)
    command = command.replace("TORCH_CKPT_DIR", str(root / "tiny"))
    command = command.replace("MS_CKPT_NAME", "llama2_7b.ckpt").replace("4096", str(SEQ))
    command = command.replace("/{path}", str(root)).replace("{path}", str(root))
    argv = shlex.split(command)
    assert argv[0] == "mindsft"
    if argv[1] == "msrun-launcher":
        assert argv[-1] == "8"  # the guide's device count
        argv[-1] = WORKERS
    return argv[1:]


def run_mindsft(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse: an unknown subcommand or flag
        return exc.code


def check_outputs(index: int, root) -> None:
    """What each command of the guide leaves, where the guide says."""
    output = root / "output"
    if index == 0:
        assert len(ms.load_checkpoint(str(root / "llama2_7b.ckpt"))) == 21
    elif index == 1:
        assert len(json.loads((root / "alpaca-data-conversation.json").read_text())) == RECORDS
    elif index == 2:
        stats = json.loads((root / f"alpaca-fastchat{SEQ}.mindrecord.stats.json").read_text())
        assert stats["rows"] == RECORDS and stats["rows_truncated"] == 0
    else:
        losses = [json.loads(line) for line in (output / "loss.jsonl").read_text().splitlines()]
        assert losses and all(r["loss"] > 0 for r in losses)
        ranks = 1 if index == 3 else int(WORKERS)
        for rank in range(ranks):
            assert list((output / "checkpoint" / f"rank_{rank}").glob("*.ckpt"))


@pytest.mark.parametrize(("index", "script"), STEPS)
def test_the_guide_command_runs_as_written(index, script, guide, sft_guide_commands, monkeypatch):
    assert len(sft_guide_commands) == len(STEPS)
    command = sft_guide_commands[index]
    assert command.startswith(script), command
    monkeypatch.chdir(guide)  # the guide runs from a MindFormers checkout: ./output, configs/
    if index == 6:  # the guide's weight folder: the full checkpoint as rank_0's
        (guide / "checkpoint/rank_0").mkdir(parents=True, exist_ok=True)
        shutil.copy(guide / "llama2_7b.ckpt", guide / "checkpoint/rank_0/llama2_7b.ckpt")
    shutil.rmtree(guide / "output", ignore_errors=True)  # each run's own ./output
    assert run_mindsft(as_mindsft(command, guide)) == 0
    check_outputs(index, guide)

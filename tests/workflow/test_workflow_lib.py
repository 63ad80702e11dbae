"""The library functions the workflow's scripts call (lib/mindsft/workflow)."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml
from mindsft.errors import MindsftError
from mindsft.workflow.config import resolve_finetune_yaml
from mindsft.workflow.data import split_alpaca
from mindsft.workflow.launch import node_argv
from mindsft.workflow.provenance import write_manifest


@pytest.fixture
def tiny_lora(repo):
    """The demo's LoRA finetune YAML."""
    return repo / "config" / "finetune" / "tiny_lora.yaml"


def test_resolved_yaml_takes_the_runs_seq_length_and_overrides(tiny_lora):
    tree = resolve_finetune_yaml(
        tiny_lora, 256, {"runner_config.epochs": 1, "optimizer.learning_rate": 1e-3}
    )
    assert tree["model"]["model_config"]["seq_length"] == 256
    assert tree["runner_config"]["epochs"] == 1
    assert tree["optimizer"]["learning_rate"] == 1e-3
    assert yaml.safe_load(tiny_lora.read_text())["runner_config"]["epochs"] != 1  # source kept


@pytest.mark.parametrize(
    "key, named",
    [
        ("runner_config.epoch", "'runner_config.epoch'"),
        ("runer_config.epochs", "'runer_config' is not a section"),
    ],
)
def test_an_override_of_a_key_that_is_not_there_is_an_error_naming_it(tiny_lora, key, named):
    with pytest.raises(MindsftError, match=named):
        resolve_finetune_yaml(tiny_lora, 64, {key: 1})


def test_split_holds_out_a_seeded_disjoint_part_in_source_order(tmp_path):
    records = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(50)]
    src = tmp_path / "a.json"
    src.write_text(json.dumps(records))
    split_alpaca(src, tmp_path / "t.json", tmp_path / "e.json", eval_records=7, seed=3)
    train = json.loads((tmp_path / "t.json").read_text())
    held = json.loads((tmp_path / "e.json").read_text())
    assert len(held) == 7 and len(train) == 43
    assert sorted(train + held, key=records.index) == records
    assert train == sorted(train, key=records.index) and held == sorted(held, key=records.index)
    split_alpaca(src, tmp_path / "t2.json", tmp_path / "e2.json", eval_records=7, seed=3)
    assert (tmp_path / "e2.json").read_text() == (tmp_path / "e.json").read_text()
    split_alpaca(src, tmp_path / "t3.json", tmp_path / "e3.json", eval_records=7, seed=4)
    assert (tmp_path / "e3.json").read_text() != (tmp_path / "e.json").read_text()


def test_split_refuses_to_hold_out_everything(tmp_path):
    src = tmp_path / "a.json"
    src.write_text(json.dumps([{"instruction": "q", "output": "a"}] * 3))
    with pytest.raises(MindsftError, match="eval_records=3 leaves nothing to train on"):
        split_alpaca(src, tmp_path / "t.json", tmp_path / "e.json", eval_records=3)
    assert not (tmp_path / "t.json").exists()


def test_each_node_of_a_slurm_allocation_gets_its_rank_and_the_first_host(monkeypatch, slurm_conf):
    # scontrol expands the node list; it reads a slurm.conf to do so
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_NODEID", "2")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "npu[07-10]")
    argv = node_argv(["finetune", "--config", "c.yaml"], workers=8, nodes=4)
    assert argv == [
        "finetune",
        "--config",
        "c.yaml",
        "--use_parallel",
        "True",
        "--worker_num",
        "32",
        "--local_worker_num",
        "8",
        "--node_rank=2",
        "--master_addr=npu07",
        f"--master_port={20000 + 4242}",
    ]


def test_outside_slurm_one_node_uses_loopback_and_more_nodes_are_refused(monkeypatch):
    for var in [v for v in os.environ if v.startswith("SLURM_")]:
        monkeypatch.delenv(var)
    argv = node_argv(["finetune"], workers=2, nodes=1)
    assert argv[1:7] == ["--use_parallel", "True", "--worker_num", "2", "--local_worker_num", "2"]
    assert "--master_addr=127.0.0.1" in argv and "--node_rank=0" in argv
    with pytest.raises(MindsftError, match="nodes=2 needs a SLURM allocation"):
        node_argv(["finetune"], workers=2, nodes=2)


def test_manifest_names_every_input_with_its_sha256(tmp_path):
    (tmp_path / "w.ckpt").write_bytes(b"weights")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    (tmp_path / "out.ckpt").write_bytes(b"merged")
    m = write_manifest(
        tmp_path / "manifest.json",
        run="r",
        inputs={"weights": tmp_path / "w.ckpt", "hf": tmp_path / "hf"},
        outputs={"model.ckpt": tmp_path / "out.ckpt"},
    )
    assert m["inputs"]["weights"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert m["inputs"]["hf"]["files"] == {"config.json": hashlib.sha256(b"{}").hexdigest()}
    assert m["outputs"] == {"model.ckpt": {"sha256": hashlib.sha256(b"merged").hexdigest()}}
    first = (tmp_path / "manifest.json").read_text()
    write_manifest(
        tmp_path / "manifest.json",
        run="r",
        inputs={"weights": tmp_path / "w.ckpt", "hf": tmp_path / "hf"},
        outputs={"model.ckpt": tmp_path / "out.ckpt"},
    )
    assert (
        tmp_path / "manifest.json"
    ).read_text() == first  # no timestamps: same inputs, same file


LOG_TO_SCRIPT = """
import sys
from mindsft.errors import MindsftError
from mindsft.workflow.logs import log_to

with log_to(sys.argv[1]):
    print("working")
    if sys.argv[2] == "mindsft":
        raise MindsftError("data.json: not valid JSON")
    open("absent.json")
print("not reached")
"""


@pytest.mark.parametrize(
    ("error", "line"),
    [
        ("mindsft", "data.json: not valid JSON"),
        ("os", "absent.json: No such file or directory"),
    ],
)
def test_an_error_in_a_script_is_one_line_in_its_log_and_exit_2(tmp_path, error, line):
    log = tmp_path / "rule.log"
    done = subprocess.run(
        [sys.executable, "-c", LOG_TO_SCRIPT, str(log), error],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stdout == done.stderr == ""
    assert log.read_text() == f"working\nmindsft: error: {line}\n"

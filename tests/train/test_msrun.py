"""Data parallel under msrun on CPU: `--worker_num 2` relaunches under msrun and
trains as one worker with twice the batch, the replicas stay identical, and the
full-parameter "merge" takes rank 0's weights after checking them."""

import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindsft.cli import main
from mindsft.train.config import load_finetune_config
from mindsft.train.launch import cluster_of
from mindsft.train.msrun import msrun_command
from mindsft.train.trainer import RunPaths, Trainer


def test_msrun_command_passes_its_own_flags_through(tmp_path):
    args = Namespace(
        worker_num=16, local_worker_num=8, master_addr="10.0.0.1", master_port=9000, node_rank=1
    )
    cmd = msrun_command(["finetune", "--config", "c.yaml"], cluster_of(args, tmp_path))
    assert Path(cmd[0]).name == "msrun"
    assert cmd[1:] == [
        "--worker_num",
        "16",
        "--local_worker_num",
        "8",
        "--master_port",
        "9000",
        "--master_addr",
        "10.0.0.1",
        "--node_rank",
        "1",
        "--log_dir",
        str(tmp_path / "msrun_log"),
        "--join",
        "True",
        "--tail_worker_log",
        "-2",
        "python",
        "-m",
        "mindsft.train.worker",
        "finetune",
        "--config",
        "c.yaml",
    ]
    single = Namespace(
        worker_num=2, local_worker_num=None, master_addr=None, master_port=8118, node_rank=None
    )
    assert msrun_command([], cluster_of(single, tmp_path))[1:7] == [
        "--worker_num",
        "2",
        "--local_worker_num",
        "2",
        "--master_port",
        "8118",
    ]


def test_two_workers_equal_one_worker_with_twice_the_batch(
    tmp_path, data_parallel_inputs, free_port, cli_env, assert_two_workers_match_the_single_run
):
    inputs = data_parallel_inputs
    base, data, two, one = inputs.base, inputs.data, inputs.two, inputs.one
    out = tmp_path / "dp"
    argv = [sys.executable, "-m", "mindsft.cli", "finetune", "--config", str(two)]
    argv += [
        "--train_dataset_dir",
        str(data),
        "--load_checkpoint",
        str(base),
        "--output_dir",
        str(out),
    ]
    argv += ["--use_parallel", "True", "--worker_num", "2", "--master_port", str(free_port)]
    done = subprocess.run(
        argv, env=cli_env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]

    single = Trainer(
        load_finetune_config(one), RunPaths(str(data), str(base), str(tmp_path / "single"))
    )
    single.setup()
    single.train()
    assert_two_workers_match_the_single_run(out, tmp_path / "single")
    merged = tmp_path / "merged.ckpt"
    argv = ["merge-lora", "--config", str(two), "--base_checkpoint", str(base)]
    assert main([*argv, "--lora_checkpoint", str(out), "--output_path", str(merged)]) == 0
    weights = ms.load_checkpoint(str(merged))
    assert "adam_m.model.norm_out.weight" not in weights
    for p in single.net.get_parameters():
        np.testing.assert_allclose(weights[p.name].asnumpy(), p.asnumpy(), rtol=1e-3, atol=5e-4)


@pytest.mark.parametrize("extra", [["--use_parallel", "True"]])
def test_use_parallel_without_msrun_or_worker_num_is_one_line(tmp_path, extra, cli_env):
    argv = [
        sys.executable,
        "-m",
        "mindsft.cli",
        "finetune",
        "--config",
        "x.yaml",
        "--train_dataset_dir",
        "d",
    ]
    argv += ["--load_checkpoint", "b.ckpt", "--output_dir", str(tmp_path), *extra]
    (tmp_path / "x.yaml").write_text("model: {model_config: {hidden_size: 8}}\n")
    done = subprocess.run(
        argv, cwd=tmp_path, env=cli_env, capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert done.returncode == 2 and len(lines) == 1 and "needs msrun" in lines[0]

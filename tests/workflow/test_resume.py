"""A finetune job killed mid-training (as a node failure or a SLURM preemption
kills it) resumes from its last checkpoint when the workflow is run again, and
ends with the checkpoint of an uninterrupted run; the work dir it trained in is
gone once the output is complete, and a run with other parameters never resumes
from it."""

import json
import os
import re
import signal
import subprocess
import time

import mindspore as ms
import numpy as np
from mindsft.cli import main

RUN = "tiny_full"
TRAIN = f"results/{RUN}/train"


def small_run(config):
    """tiny_full on one worker, five epochs (110 steps of batch 4, a save every 50),
    from the tiny model as made (no pretraining)."""
    del config["models"]["tiny"]["pretrain"]
    config["demo_runs"] = [RUN]
    config["runs"][RUN]["workers"] = 1
    config["runs"][RUN]["overrides"]["runner_config.epochs"] = 5


def steps(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_killed_finetune_resumes_on_rerun_and_ends_as_an_uninterrupted_run(
    tmp_path, write_config, snakemake, repo, venv_bin
):
    write_config(tmp_path, small_run)
    snakemake(tmp_path, "--cores", "2", "--omit-from", "finetune", TRAIN)
    cmd = [str(venv_bin / "snakemake"), "-s", str(repo / "Snakefile"), "--directory", str(tmp_path)]
    cmd += [f"--configfile={tmp_path / 'config.yaml'}", "--cores", "2", TRAIN]
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    results = tmp_path / "results" / RUN
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        logs = list(results.glob(".train.work-*/loss.jsonl"))
        if logs and steps(logs[0]) >= 55:
            break
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # snakemake, its job and the training process
    first.wait()
    assert not (tmp_path / TRAIN).exists(), (tmp_path / "first.log").read_text()[-2000:]
    [work] = results.glob(".train.work-*")
    assert 55 <= steps(work / "loss.jsonl") < 110

    snakemake(tmp_path, "--unlock")
    snakemake(tmp_path, "--cores", "2", "--rerun-incomplete", TRAIN)
    log = (tmp_path / "logs" / "finetune" / f"{RUN}.log").read_text()
    assert f"resuming the interrupted run in results/{RUN}/{work.name}" in log
    resumed_at = int(re.search(r"resumed from \S+ at optimizer step (\d+)", log).group(1))
    assert resumed_at > 0 and resumed_at % 50 == 0
    assert not list(results.glob(".train.work-*"))

    # the uninterrupted run, by hand, from the same inputs
    reference = tmp_path / "reference"
    argv = ["finetune", "--config", str(results / "finetune.yaml")]
    argv += [
        "--train_dataset_dir",
        str(tmp_path / "results/data/tiny_alpaca/train/tiny_96.mindrecord"),
    ]
    argv += [
        "--load_checkpoint",
        str(tmp_path / "results/weights/tiny.ckpt"),
        "--output_dir",
        str(reference),
    ]
    assert main(argv) == 0
    read = lambda d: [json.loads(x)["loss"] for x in (d / "loss.jsonl").read_text().splitlines()]  # noqa: E731
    assert read(tmp_path / TRAIN) == read(reference)
    final = sorted((tmp_path / TRAIN / "checkpoint" / "rank_0").glob("*.ckpt"))[-1]
    ours = ms.load_checkpoint(str(final))
    theirs = ms.load_checkpoint(str(reference / "checkpoint" / "rank_0" / final.name))
    for name, value in theirs.items():
        if name.startswith(("model.", "lm_head.")):
            assert np.array_equal(ours[name].asnumpy(), value.asnumpy()), name


def test_a_work_dir_of_other_parameters_is_not_resumed_and_is_removed(tmp_path):
    from mindsft.train.lock import RunLock
    from mindsft.workflow.launch import _remove_other_work_dirs, work_dir

    files = {name: tmp_path / name for name in ("c.yaml", "d.mindrecord", "w.ckpt")}
    for path in files.values():
        path.write_text("x")
    kwargs = {
        "config": files["c.yaml"],
        "train_data": files["d.mindrecord"],
        "weights": files["w.ckpt"],
    }
    first = work_dir(tmp_path / "train", workers=2, nodes=1, code="abc", **kwargs)
    assert first == work_dir(tmp_path / "train", workers=2, nodes=1, code="abc", **kwargs)
    assert first.parent == tmp_path and first.name.startswith(".train.work-")
    assert first != work_dir(tmp_path / "train", workers=1, nodes=1, code="abc", **kwargs)
    assert first != work_dir(tmp_path / "train", workers=2, nodes=1, code="abd", **kwargs)
    files["c.yaml"].write_text("y")
    second = work_dir(tmp_path / "train", workers=2, nodes=1, code="abc", **kwargs)
    assert second != first
    (first / "checkpoint").mkdir(parents=True)
    busy = tmp_path / ".train.work-0123456789ab"
    with RunLock(busy):  # a live run's
        _remove_other_work_dirs(tmp_path / "train", second)
        assert not first.exists() and busy.exists()

"""Runs that survive kills and preemption, through the CLI in subprocesses.

- SIGTERM of a single-process run: it stops at the next step boundary, writes that
  step's checkpoint, says so in one line and exits 143; --resume_training then
  gives every later loss of an uninterrupted run, bit for bit.
- Under msrun with 2 workers (msrun-launcher and finetune --worker_num): SIGKILL
  of the launcher's process group at a random point, as soon as a checkpoint write
  is seen in progress, leaves no mindsft or msrun process 5 s later; SIGTERM of the
  launcher is forwarded, every worker stops after the same step and checkpoints;
  the run resumed after both ends with the losses of an uninterrupted 2-worker run.
- A taken master port is replaced by a free one on one node (with a line); a killed
  scheduler ends the run within seconds with one line.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mindsft.train.checkpoint import RunCheckpoints
from mindsft.train.config import load_finetune_config
from mindsft.train.trainer import RunPaths, Trainer


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, make_base_checkpoint, make_mindrecord, finetune_yaml):
    d = tmp_path_factory.mktemp("faults")
    return {
        "base": make_base_checkpoint(d / "base.ckpt"),
        "data": make_mindrecord(d / "data.mindrecord", rows=64),
        # 32 steps on one worker, 16 on two
        "yaml": finetune_yaml(d / "full.yaml", epochs=1, batch_size=2, save_steps=2, keep_max=3),
        "dir": d,
    }


def finetune_args(inputs, out: Path, *extra) -> list:
    return [
        "finetune",
        "--config",
        str(inputs["yaml"]),
        "--train_dataset_dir",
        str(inputs["data"]),
        "--load_checkpoint",
        str(inputs["base"]),
        "--output_dir",
        str(out),
        *extra,
    ]


def start(argv: list, env: dict, log: Path) -> subprocess.Popen:
    """`python -m mindsft.cli ARGV` in a session of its own, output to `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mindsft.cli", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(condition, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def steps_logged(out: Path) -> int:
    log = out / "loss.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def processes_of(marker: str) -> list:
    """Pids of processes whose command line mentions `marker` (a run's own path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append((int(entry.name), cmdline[:120]))
    return found


def error_lines(text: str) -> list:
    return [line for line in text.splitlines() if line.startswith("mindsft ")]


def losses(read_losses, out) -> list:
    return [(r["step"], r["loss"]) for r in read_losses(out)]


def test_sigterm_stops_a_single_process_run_at_a_step_and_resume_is_identical(
    inputs, cli_env, read_losses, tmp_path
):
    out = tmp_path / "run"
    proc = start(finetune_args(inputs, out), cli_env, tmp_path / "run.log")
    wait_for(lambda: steps_logged(out) >= 3 or proc.poll() is not None, 120, "step 3")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    lines = error_lines((tmp_path / "run.log").read_text())
    assert len(lines) == 1 and lines[0].startswith(
        "mindsft finetune: stopped by SIGTERM after step"
    )
    stopped_at = int(lines[0].split("after step ")[1].split()[0])
    assert 3 <= stopped_at < 32
    newest = RunCheckpoints(out).newest(0)
    assert newest.step == stopped_at and str(newest.path) in lines[0]
    assert not (out / ".lock").exists()

    resumed = start(finetune_args(inputs, out, "--resume_training"), cli_env, tmp_path / "r.log")
    reference = Trainer(  # trains while the subprocess resumes
        load_finetune_config(inputs["yaml"]),
        RunPaths(str(inputs["data"]), str(inputs["base"]), str(tmp_path / "reference")),
    )
    reference.setup()
    reference.train()
    assert resumed.wait(timeout=180) == 0, (tmp_path / "r.log").read_text()[-3000:]
    assert losses(read_losses, out) == losses(read_losses, tmp_path / "reference")


def partial_write(out: Path) -> bool:
    """True while a checkpoint write is in progress (its temporary file exists)."""
    for rank in (0, 1):
        folder = out / "checkpoint" / f"rank_{rank}"
        if folder.is_dir() and any(p.name.startswith(".") for p in folder.iterdir()):
            return True
    return False


def test_two_worker_run_survives_sigkill_and_sigterm_and_ends_as_an_uninterrupted_run(
    inputs, cli_env, read_losses, tmp_path
):
    reference, out = tmp_path / "reference", tmp_path / "run"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    cmd = " ".join(finetune_args(inputs, reference, "--use_parallel", "True"))
    argv = ["msrun-launcher", cmd, "2", str(port), str(reference / "logs"), "False", "600"]
    ref = start(argv, cli_env, tmp_path / "reference.log")
    # the run to break: finetune's own launcher, started beside the reference
    two = ["--use_parallel", "True", "--worker_num", "2"]
    proc = start(finetune_args(inputs, out, *two), cli_env, tmp_path / "run.log")
    wait_for(lambda: steps_logged(out) >= 2 or proc.poll() is not None, 180, "step 2")
    wait_for(lambda: partial_write(out) or proc.poll() is not None, 30, "a save", every=0.001)
    time.sleep(random.uniform(0, 0.02))
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher's process group: not msrun's
    proc.wait()
    time.sleep(5)
    assert processes_of(str(out)) == []

    assert ref.wait(timeout=240) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    ref_log = (tmp_path / "reference.log").read_text()
    assert f"master port {port} is in use on 127.0.0.1; using port" in ref_log
    busy.close()

    proc = start(finetune_args(inputs, out, *two, "--resume_training"), cli_env, tmp_path / "2.log")
    done = steps_logged(out)
    wait_for(lambda: steps_logged(out) > done + 1 or proc.poll() is not None, 180, "2 more steps")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, (tmp_path / "2.log").read_text()[-3000:]
    lines = error_lines((tmp_path / "2.log").read_text())
    assert len(lines) == 1 and "stopped by SIGTERM after step" in lines[0], lines
    stopped_at = int(lines[0].split("after step ")[1].split()[0])
    ckpts = RunCheckpoints(out)
    assert [ckpts.newest(r).step for r in (0, 1)] == [stopped_at] * 2
    assert processes_of(str(out)) == []

    proc = start(finetune_args(inputs, out, *two, "--resume_training"), cli_env, tmp_path / "3.log")
    assert proc.wait(timeout=240) == 0, (tmp_path / "3.log").read_text()[-3000:]
    assert losses(read_losses, out) == losses(read_losses, reference)
    assert not list(out.glob("checkpoint/rank_*/.*"))  # no partial write left

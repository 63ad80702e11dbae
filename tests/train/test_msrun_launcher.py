"""`mindsft msrun-launcher`: scripts/msrun_launcher.sh's 1/2/6/9-argument contract
and defaults, CMD as the guide writes it, and what the launcher does when a worker
or the scheduler fails (the workers' own report, within seconds, in one line)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mindsft.cli import main
from mindsft.errors import MindsftError
from mindsft.train.msrun import error_report
from mindsft.train.msrun_launcher import child_argv, parse


def said():
    lines = []
    return lines, lines.append


def test_one_argument_runs_eight_workers_with_the_scripts_defaults(monkeypatch):
    monkeypatch.delenv("MF_LOG_SUFFIX", raising=False)
    lines, say = said()
    cmd, cluster = parse(["finetune --config c.yaml"], say)
    assert cmd == "finetune --config c.yaml"
    assert (cluster.worker_num, cluster.local_worker_num) == (8, 8)
    assert (cluster.master_addr, cluster.master_port, cluster.node_rank) == ("127.0.0.1", 8118, 0)
    assert cluster.log_dir == Path("output/msrun_log")
    assert (cluster.echo, cluster.cluster_time_out) == (False, 7200)
    assert lines == [
        "No parameter is entered. Notice that the program will run on default 8 cards."
    ]


def test_two_six_and_nine_arguments_fill_the_scripts_positions(monkeypatch):
    monkeypatch.setenv("MF_LOG_SUFFIX", "try2")
    _, cluster = parse(["CMD", "4"], said()[1])
    assert (cluster.worker_num, cluster.local_worker_num, cluster.master_port) == (4, 4, 8118)
    assert cluster.log_dir == Path("output/msrun_log_try2")
    _, cluster = parse(["CMD", "2", "9000", "logs", "True", "300"], said()[1])
    assert (cluster.worker_num, cluster.master_port, cluster.log_dir) == (
        2,
        9000,
        Path("logs_try2"),
    )
    assert (cluster.echo, cluster.cluster_time_out, cluster.single_node) == (True, 300, True)
    lines, say = said()
    _, cluster = parse(["CMD", "16", "8", "10.0.0.1", "9001", "1", "logs", "False", "60"], say)
    assert (cluster.worker_num, cluster.local_worker_num, cluster.node_rank) == (16, 8, 1)
    assert (cluster.master_addr, cluster.master_port, cluster.single_node) == (
        "10.0.0.1",
        9001,
        False,
    )
    assert "Please run this script on other nodes with different node_rank." in lines[0]
    lines, say = said()
    assert parse(["CMD", "2", "2", "10.0.0.1", "9001", "0", "l", "False", "60"], say)[1].single_node
    assert lines == [
        "worker_num is equal to local_worker, Notice that task will run on single node."
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["CMD", "2", "3"], "takes 1, 2, 6 or 9 arguments, got 3"),
        (["CMD", "two"], "worker_num=two is not a number"),
        (["CMD", "2", "port", "logs", "False", "60"], "master_port=port is not a number"),
    ],
)
def test_other_argument_lists_are_one_line(params, message):
    with pytest.raises(MindsftError, match=message):
        parse(params, said()[1])


def test_cmd_may_be_the_guides_run_mindformer_py_string():
    guide = "run_mindformer.py --config configs/x.yaml --use_parallel True --run_mode finetune"
    assert child_argv(guide)[:3] == ["run", "--config", "configs/x.yaml"]
    assert child_argv("python scripts/run_mindformer.py --config a")[:2] == ["run", "--config"]
    assert child_argv("mindsft finetune --config 'a b.yaml'") == [
        "finetune",
        "--config",
        "a b.yaml",
    ]
    assert child_argv("finetune --config a") == ["finetune", "--config", "a"]


def test_a_cmd_mindsft_cannot_parse_is_one_line(capsys):
    assert main(["msrun-launcher", "finetune --config c.yaml", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the following arguments are required" in err[0]


def test_error_report_gives_the_mindsft_line_else_the_last_traceback(tmp_path):
    log = tmp_path / "worker_1.log"
    log.write_text("[WARNING] x\nmindsft finetune: error: d.mindrecord: no such MindRecord file\n")
    assert error_report(log) == "d.mindrecord: no such MindRecord file"
    log.write_text(
        '[INFO] start\nTraceback (most recent call last):\n  File "a.py", line 6, in <module>\n'
        "    init()\nRuntimeError: Failed to initialize distributed job cluster\n"
        "1.Spawned worker process number is not as expected.\n\n"
        "----------------------------------------------------\n- C++ Call Stack:\n"
    )
    report = error_report(log)
    assert report.splitlines()[0] == "Traceback (most recent call last):"
    assert report.splitlines()[-2:] == [
        "RuntimeError: Failed to initialize distributed job cluster",
        "1.Spawned worker process number is not as expected.",
    ]


def test_a_taken_port_on_several_nodes_is_one_line_and_starts_nothing(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = "finetune --config c.yaml --train_dataset_dir d --load_checkpoint b --output_dir "
        params = [cmd + str(tmp_path / "out"), "2", "1", "127.0.0.1", str(port), "0"]
        rc = main(["msrun-launcher", *params, str(tmp_path / "logs"), "False", "60"])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert rc == 2 and len(err) == 1
    assert f"master port {port} is in use on 127.0.0.1; every node must use the same port" in err[0]
    assert not list((tmp_path / "logs").glob("worker_*.log"))
    assert not (tmp_path / "out").exists()  # the lock's folder goes with it


def run_launcher(argv, env, log_path):
    with open(log_path, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mindsft.cli", "msrun-launcher", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_a_worker_error_comes_back_as_its_own_line(tmp_path, cli_env, free_port, finetune_yaml):
    yaml_path = finetune_yaml(tmp_path / "c.yaml")
    cmd = f"finetune --config {yaml_path} --train_dataset_dir {tmp_path / 'none.mindrecord'} "
    cmd += f"--load_checkpoint {tmp_path / 'b.ckpt'} --output_dir {tmp_path / 'out'} "
    cmd += "--use_parallel True"
    logs = tmp_path / "logs"
    proc = run_launcher(
        [cmd, "2", str(free_port), str(logs), "False", "60"], cli_env, tmp_path / "l"
    )
    assert proc.wait(timeout=180) == 2
    text = (tmp_path / "l").read_text()
    err = [line for line in text.splitlines() if ": error:" in line]
    assert len(err) == 1 and "none.mindrecord: no such MindRecord file" in err[0], text
    assert sorted(p.name for p in logs.glob("worker_*.log")) == ["worker_0.log", "worker_1.log"]
    assert not list(logs.glob(".status-*")) and not (tmp_path / "out" / ".lock").exists()


def test_a_killed_scheduler_ends_the_run_within_seconds_in_one_line(
    tmp_path, cli_env, free_port, finetune_yaml, make_base_checkpoint, make_mindrecord
):
    yaml_path = finetune_yaml(tmp_path / "c.yaml", epochs=50)
    data = make_mindrecord(tmp_path / "d.mindrecord", rows=8)
    base = make_base_checkpoint(tmp_path / "b.ckpt")
    out = tmp_path / "out"
    cmd = f"finetune --config {yaml_path} --train_dataset_dir {data} --load_checkpoint {base} "
    cmd += f"--output_dir {out} --use_parallel True"
    logs = tmp_path / "logs"
    proc = run_launcher(
        [cmd, "2", str(free_port), str(logs), "False", "60"], cli_env, tmp_path / "l"
    )
    deadline = time.monotonic() + 120
    scheduler = None
    while scheduler is None and time.monotonic() < deadline and proc.poll() is None:
        for path in logs.glob(".status-*/*.json"):
            if json.loads(path.read_text() or "{}").get("role") == "MS_SCHED":
                scheduler = int(path.stem)
        time.sleep(0.1)
    assert scheduler is not None, (tmp_path / "l").read_text()
    while not (out / "loss.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the cluster is up and training
    os.kill(scheduler, signal.SIGKILL)
    killed = time.monotonic()
    rc = proc.wait(timeout=60)
    assert time.monotonic() - killed < 15
    text = (tmp_path / "l").read_text()
    err = [line for line in text.splitlines() if ": error:" in line]
    assert rc == 2 and len(err) == 1 and "msrun's scheduler at 127.0.0.1" in err[0], text
    time.sleep(1)
    alive = [p for p in Path("/proc").glob("[0-9]*") if str(out) in _cmdline(p)]
    assert alive == []


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""

"""Start `mindsft finetune` the way MindFormers' msrun_launcher.sh does on a
cluster: one msrun per node (mindsft starts it), each told the node rank and the
master address. Inside a SLURM allocation those come from SLURM; on a
workstation the master is 127.0.0.1 with a free port.

A run trains in a work dir beside its output that is stable for its parameters
(`work_dir`), so a killed or preempted finetune job, rerun by Snakemake or
requeued by SLURM, resumes from its last checkpoint; the work dir becomes the
output when the run completes.

`python -m mindsft.workflow.launch -- ARGS` is the per-node entry point that
`srun` starts once on each node of a multi-node allocation."""

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from mindsft.errors import MindsftError
from mindsft.files import file_sha256
from mindsft.train.checkpoint import RunCheckpoints
from mindsft.train.lock import RunLock
from mindsft.train.msrun import free_port


def rendezvous(nodes: int) -> dict:
    """node_rank, master_addr, master_port of this node: from SLURM's environment
    (first host of the allocation, a port derived from the job id), else local."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        if nodes > 1:
            raise MindsftError(
                f"finetune: nodes={nodes} needs a SLURM allocation (no SLURM_JOB_ID)"
            )
        return {"node_rank": 0, "master_addr": "127.0.0.1", "master_port": free_port()}
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or socket.gethostname()
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    ).stdout.split()
    return {
        "node_rank": int(os.environ.get("SLURM_NODEID", "0")),
        "master_addr": hosts[0],
        "master_port": 20000 + int(job) % 20000,
    }


def node_argv(task: list, *, workers: int, nodes: int) -> list:
    """`mindsft finetune` arguments for this node: msrun's flags added."""
    where = rendezvous(nodes)
    return [
        *task,
        "--use_parallel",
        "True",
        "--worker_num",
        str(workers * nodes),
        "--local_worker_num",
        str(workers),
        *(f"--{k}={v}" for k, v in where.items()),
    ]


def mindsft(argv: list) -> None:
    """`mindsft finetune ARGV` or `mindsft run ARGV` in this process, parsed by the
    commands' own parsers (imported by name, so a rule's code hash covers them);
    a failure raises MindsftError."""
    from mindsft.train import cli, run

    parser = argparse.ArgumentParser(prog="mindsft")
    commands = parser.add_subparsers(dest="command", required=True)
    cli.register(commands)
    run.register(commands)
    args = parser.parse_args(argv)
    if rc := args.func(args):
        raise MindsftError(f"exited with {rc}")


def run_node(task: list, *, workers: int, nodes: int) -> None:
    """Run this node's msrun (through `mindsft finetune` or `mindsft run`)."""
    argv = node_argv(task, workers=workers, nodes=nodes)
    print("+ mindsft", " ".join(argv), flush=True)
    mindsft(argv)


def train(task: list, *, workers: int, nodes: int) -> None:
    """Run the training command `task` in this process, under msrun on this node, or
    under one msrun per node of a SLURM allocation (srun)."""
    if workers * nodes == 1:
        mindsft(task)
    elif nodes == 1:
        run_node(task, workers=workers, nodes=1)
    elif (rc := srun_nodes(task, workers=workers, nodes=nodes)) != 0:
        raise MindsftError(f"srun exited with {rc}")


def _stamp(path) -> list:
    st = Path(path).stat()
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def work_dir(output_dir, *, config, train_data, weights, workers: int, nodes: int, code: str):
    """The folder a run trains in, beside `output_dir`: named by a digest of what its
    results depend on (the resolved YAML's content, the data and weights files,
    the worker layout, the code), so a rerun of the same run finds its checkpoints
    and a run with other parameters never does."""
    key = [file_sha256(config), _stamp(train_data), _stamp(weights), workers, nodes, code]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]
    output_dir = Path(output_dir)
    return output_dir.with_name(f".{output_dir.name}.work-{digest}")


def _remove_other_work_dirs(output_dir: Path, keep: Path) -> None:
    """Delete the work dirs of this output's runs with other parameters (unless a
    live run holds one)."""
    for old in output_dir.parent.glob(f".{output_dir.name}.work-*"):
        if old == keep:
            continue
        try:
            with RunLock(old, say=lambda msg: None):
                pass
        except MindsftError:
            continue
        print(f"removing {old}: checkpoints of a run with other parameters", flush=True)
        shutil.rmtree(old, ignore_errors=True)


def launch_training(
    *,
    config,
    train_data,
    weights,
    output_dir,
    workers: int,
    nodes: int,
    log_dir,
    code="",
    run_mode="finetune",
) -> None:
    """Train (`run_mode` finetune, or train: pretraining) in the run's work dir
    (work_dir), resuming from its checkpoints when an earlier attempt was killed or
    preempted, and rename it to `output_dir` when every worker has finished, so
    that the output is whole or absent and the work dir gone. msrun's worker logs
    are kept in `log_dir`."""
    output_dir = Path(output_dir)
    work = work_dir(
        output_dir,
        config=config,
        train_data=train_data,
        weights=weights,
        workers=workers,
        nodes=nodes,
        code=code,
    )
    _remove_other_work_dirs(output_dir, work)
    task = ["finetune"] if run_mode == "finetune" else ["run", "--run_mode", run_mode]
    task += ["--config", str(config), "--train_dataset_dir", str(train_data)]
    task += ["--load_checkpoint", str(weights), "--output_dir", str(work)]
    if RunCheckpoints(work).ranks():
        print(f"resuming the interrupted run in {work}", flush=True)
        task += ["--resume_training", "True"]
    try:
        train(task, workers=workers, nodes=nodes)
    except MindsftError as exc:
        kept = f" (msrun logs kept in {log_dir})" if (work / "msrun_log").is_dir() else ""
        raise MindsftError(f"{task[0]}: {exc}{kept}") from None
    finally:
        if (work / "msrun_log").is_dir():
            shutil.rmtree(log_dir, ignore_errors=True)
            shutil.copytree(work / "msrun_log", log_dir, ignore=shutil.ignore_patterns(".*"))
    if output_dir.exists():
        shutil.rmtree(output_dir)
    os.replace(work, output_dir)


def srun_nodes(task: list, *, workers: int, nodes: int) -> int:
    """One task per node of the SLURM allocation, each running run_node."""
    if not os.environ.get("SLURM_JOB_ID"):
        raise MindsftError(f"finetune: nodes={nodes} needs a SLURM allocation (no SLURM_JOB_ID)")
    cmd = [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        sys.executable,
        "-m",
        "mindsft.workflow.launch",
        str(workers),
        str(nodes),
        *task,
    ]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    try:
        run_node(sys.argv[3:], workers=int(sys.argv[1]), nodes=int(sys.argv[2]))
    except MindsftError as exc:
        print(f"mindsft finetune: error: {exc}", file=sys.stderr)
        sys.exit(2)

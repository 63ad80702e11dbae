"""Launch `mindsft finetune` the way MindFormers' msrun_launcher.sh does: one
`msrun` per node, each told the node rank and the master address. Inside a SLURM
allocation those come from SLURM; on a workstation the master is 127.0.0.1.

`python -m mindsft.workflow.launch` is the per-node entry point that `srun`
starts once on each node of a multi-node allocation."""

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError

MINDSFT = [sys.executable, "-m", "mindsft.cli"]


def free_port() -> int:
    """A TCP port nobody listens on right now (for a single-node msrun)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slurm_node() -> dict:
    """Node rank, master address and a job-unique port from SLURM's environment,
    or None outside a SLURM job."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or socket.gethostname()
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    ).stdout.split()
    return {
        "node_rank": int(os.environ.get("SLURM_NODEID", "0")),
        "master_addr": hosts[0],
        "master_port": 20000 + int(job) % 20000,
    }


def msrun_command(task: list, *, workers: int, nodes: int, node_rank: int, master_addr: str,
                  master_port: int, log_dir) -> list:
    """msrun for one node: `workers` local workers of `workers * nodes`. `task`
    starts with the Python that runs it; msrun starts workers as `python ...`."""
    return [
        sys.executable,
        "-m",
        "mindspore.parallel.cluster.run",
        f"--worker_num={workers * nodes}",
        f"--local_worker_num={workers}",
        f"--master_addr={master_addr}",
        f"--master_port={master_port}",
        f"--node_rank={node_rank}",
        f"--log_dir={log_dir}",
        "--join=True",
        "python",
        *task[1:],
    ]


def _tail_worker_logs(log_dir, out, lines=40):
    for path in sorted(Path(log_dir).glob("*.log")):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- last lines of {path} ---", *text, sep="\n", file=out)


def run_node(task: list, *, workers: int, nodes: int, log_dir) -> None:
    """Run this node's share of the job: msrun with SLURM's (or local) rendezvous."""
    where = slurm_node()
    if where is None:
        if nodes > 1:
            raise MindsftError(f"finetune: nodes={nodes} needs a SLURM allocation (SLURM_JOB_ID unset)")
        where = {"node_rank": 0, "master_addr": "127.0.0.1", "master_port": free_port()}
    cmd = msrun_command(task, workers=workers, nodes=nodes, log_dir=log_dir, **where)
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    # msrun starts each worker as `python ...`: make that this interpreter
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                  os.environ.get("PATH", "")])}
    result = subprocess.run(cmd, env=env, check=False)
    if result.returncode != 0:
        _tail_worker_logs(log_dir, sys.stderr)
        raise MindsftError(f"finetune: msrun exited with {result.returncode} (worker logs in {log_dir})")


def run_finetune(*, config, train_data, weights, output_dir, workers: int, nodes: int,
                 log_dir) -> None:
    """Train into a temporary sibling of `output_dir` and rename it into place
    when every worker has finished, so the folder is whole or absent. msrun's
    worker logs go to `log_dir`."""
    with atomic_output(output_dir) as tmp:
        task = [*MINDSFT, "finetune", "--config", str(config), "--train_dataset_dir",
                str(train_data), "--load_checkpoint", str(weights), "--output_dir", str(tmp)]
        if workers * nodes == 1:
            print("+", " ".join(task), file=sys.stderr, flush=True)
            subprocess.run(task, check=True)
            return
        task += ["--use_parallel", "True"]
        if nodes == 1:
            run_node(task, workers=workers, nodes=1, log_dir=log_dir)
            return
        if not os.environ.get("SLURM_JOB_ID"):
            raise MindsftError(f"finetune: nodes={nodes} needs a SLURM allocation (SLURM_JOB_ID unset)")
        srun = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
                sys.executable, "-m", "mindsft.workflow.launch", f"--workers={workers}",
                f"--nodes={nodes}", f"--log_dir={log_dir}", "--", *task]
        print("+", " ".join(srun), file=sys.stderr, flush=True)
        subprocess.run(srun, check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="one node's msrun (started by srun)")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--log_dir", required=True)
    parser.add_argument("task", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    task = args.task[1:] if args.task[:1] == ["--"] else args.task
    try:
        run_node(task, workers=args.workers, nodes=args.nodes, log_dir=args.log_dir)
    except MindsftError as exc:
        print(f"launch: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

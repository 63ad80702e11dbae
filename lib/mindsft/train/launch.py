"""msrun glue, as MindFormers' msrun_launcher.sh does it.

`mindsft finetune --use_parallel True --worker_num N ...` re-runs itself under

    msrun --worker_num N --local_worker_num L --master_port P [--master_addr A --node_rank R]
          --log_dir OUTPUT_DIR/msrun_log --join True  python -m mindsft.cli finetune ...

Inside a worker (msrun sets MS_ROLE) it initialises communication; every worker
then reads its shard and gradients are all-reduced in the train step.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from mindsft.errors import MindsftError


def in_msrun() -> bool:
    """True inside a process msrun started (a worker or its scheduler)."""
    return "MS_ROLE" in os.environ


def msrun_command(child_argv: list, args, log_dir: Path) -> list:
    """The msrun command line that runs `python -m mindsft.cli <child_argv>` on every worker."""
    cmd = [str(Path(sys.executable).with_name("msrun"))]
    local = args.local_worker_num or args.worker_num
    cmd += ["--worker_num", str(args.worker_num), "--local_worker_num", str(local)]
    cmd += ["--master_port", str(args.master_port)]
    if args.master_addr:
        cmd += ["--master_addr", args.master_addr]
    if args.node_rank is not None:
        cmd += ["--node_rank", str(args.node_rank)]
    cmd += ["--log_dir", str(log_dir), "--join", "True"]
    return cmd + ["python", "-m", "mindsft.cli", *child_argv]


def first_error(log_dir: Path) -> str | None:
    """The first `mindsft ...: error:` line any worker logged."""
    for log in sorted(Path(log_dir).glob("worker_*.log")):
        for line in log.read_text(errors="replace").splitlines():
            m = re.search(r"mindsft \S+: error: (.*)", line)
            if m:
                return m.group(1)
    return None


def relaunch(child_argv: list, args, output_dir) -> int:
    """Run the job under msrun and wait; a worker's error comes back as one line."""
    log_dir = Path(output_dir) / "msrun_log"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = (
        f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # msrun runs `python`
    )
    cmd = msrun_command(child_argv, args, log_dir)
    with (log_dir / f"msrun_node{args.node_rank or 0}.log").open("w") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        error = first_error(log_dir)
        if error:
            raise MindsftError(error)
        raise MindsftError(f"msrun exited with {done.returncode}; worker logs are in {log_dir}")
    return 0


def needs_msrun(use_parallel: bool, worker_num) -> bool:
    """True when this process should start msrun rather than train."""
    return use_parallel and not in_msrun() and (worker_num or 1) > 1


def init_workers(use_parallel: bool, worker_num=None) -> tuple:
    """(rank, world_size): communication initialised inside msrun, (0, 1) for one
    in-process worker."""
    if not in_msrun():
        if use_parallel and worker_num is None:
            raise MindsftError(
                "--use_parallel True needs msrun: add --worker_num N (mindsft starts msrun) "
                "or launch mindsft under msrun"
            )
        return 0, 1
    if not use_parallel:
        raise MindsftError("running under msrun needs --use_parallel True")
    from mindspore.communication import get_group_size, get_rank, init

    init()  # the scheduler process does not return from here
    return get_rank(), get_group_size()

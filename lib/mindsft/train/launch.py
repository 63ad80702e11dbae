"""msrun glue, as MindFormers' msrun_launcher.sh does it.

`mindsft finetune --use_parallel True --worker_num N ...` re-runs itself under

    msrun --worker_num N --local_worker_num L --master_port P [--master_addr A --node_rank R]
          --log_dir OUTPUT_DIR/msrun_log --join True  python -m mindsft.train.worker finetune ...

through `mindsft.train.msrun`, holding the output_dir's lock for the whole run.
Inside a worker (msrun sets MS_ROLE) it initialises communication and checks
that every worker of the cluster belongs to this run; every worker then reads its
shard and gradients are all-reduced in the train step.
"""

import contextlib
import os
from pathlib import Path

import numpy as np

from mindsft.errors import MindsftError
from mindsft.train.lock import RunLock
from mindsft.train.msrun import RUN_ID_ENV, Cluster, run_msrun
from mindsft.train.signals import LAUNCHER_ENV


def in_msrun() -> bool:
    """True inside a process msrun started (a worker or its scheduler)."""
    return "MS_ROLE" in os.environ


def cluster_of(args, output_dir) -> Cluster:
    """msrun's flags from finetune's own (--worker_num, --master_port, ...)."""
    return Cluster(
        worker_num=args.worker_num,
        local_worker_num=args.local_worker_num or args.worker_num,
        log_dir=Path(output_dir) / "msrun_log",
        master_addr=args.master_addr or "127.0.0.1",
        master_port=args.master_port,
        node_rank=args.node_rank or 0,
    )


def relaunch(child_argv: list, args, output_dir, say) -> int:
    """Run the job under msrun, holding output_dir's lock, and wait; a worker's
    error comes back as one line (or its traceback's last lines)."""
    cluster = cluster_of(args, output_dir)
    with RunLock(output_dir, cluster.node_rank, say):
        return run_msrun(child_argv, cluster, say)


def run_lock(output_dir, rank: int, say):
    """The lock a training process takes on its output_dir: none under a mindsft
    launcher (which holds it) or on ranks other than 0 under a bare msrun."""
    if LAUNCHER_ENV in os.environ or rank != 0:
        return contextlib.nullcontext()
    return RunLock(output_dir, say=say)


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
    rank, world = get_rank(), get_group_size()
    check_run_id(world)
    return rank, world


def all_sum(values, world: int) -> np.ndarray:
    """The element-wise sum over every worker of a small float32 vector (each
    worker passes its own; one worker gets its own back)."""
    values = np.asarray(values, np.float32)
    if world == 1:
        return values
    from mindspore import Tensor, ops

    return ops.AllReduce()(Tensor(values)).asnumpy()


def check_run_id(world: int) -> None:
    """Refuse a cluster whose workers come from different runs (two runs' workers
    that reached one scheduler): every worker compares the run id its launcher
    gave it."""
    from mindspore import Tensor, ops

    value = int(os.environ.get(RUN_ID_ENV) or "0", 16)
    parts = np.array([(value >> (16 * i)) & 0xFFFF for i in range(4)], np.float32)  # exact
    seen = ops.AllGather()(Tensor(parts)).asnumpy().reshape(world, 4)
    if not (seen == seen[0]).all():
        where = f"{os.environ.get('MS_SCHED_HOST')}:{os.environ.get('MS_SCHED_PORT')}"
        raise MindsftError(
            f"workers of another run joined this run's cluster at {where} (their run ids "
            "differ); give runs that share a host different master ports"
        )

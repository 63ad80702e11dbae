"""Two "nodes" of one worker each, joined by msrun's own multi-node flags.

msrun starts a scheduler on every node whose `--master_addr` is one of its own
addresses, so two nodes cannot share one network stack. Each node therefore runs
in its own Linux network namespace; a veth pair joins them on a private /30, and
both write to the same output directory as nodes on a shared filesystem would.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid

import pytest
from mindsft.train.config import load_finetune_config
from mindsft.train.trainer import RunPaths, Trainer

SUBNET = "10.231.77.{}"  # lives only inside the namespaces this test creates


def _ip(*argv, check=True):
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=check)


def _ensure_iproute2():
    """Install Debian's iproute2 when `ip` is missing (as root, like the SLURM test)."""
    if shutil.which("ip"):
        return
    if not shutil.which("apt-get"):
        pytest.skip("`ip` (iproute2) is missing and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "iproute2"], check=True, env=env, capture_output=True
    )


@contextlib.contextmanager
def finishing(procs, timeout=240):
    """Yield a list that holds each process's output once the block is done and
    they have ended; any still running then (or on an error) is killed with its
    group."""
    logs = []
    try:
        yield logs
        logs.extend(p.communicate(timeout=timeout)[0] for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def two_nodes():
    """Namespaces (node0, node1) joined by a veth pair; node i has address SUBNET.format(i + 1)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CAP_NET_ADMIN)")
    _ensure_iproute2()
    tag = uuid.uuid4().hex[:6]
    nodes = [f"msft{tag}n0", f"msft{tag}n1"]
    veth = [f"msft{tag}v0", f"msft{tag}v1"]  # at most 15 characters
    first = _ip("netns", "add", nodes[0], check=False)
    if first.returncode != 0:
        if "not permitted" in first.stderr.lower() or "permission" in first.stderr.lower():
            pytest.skip(f"cannot create a network namespace: {first.stderr.strip()}")
        raise RuntimeError(f"ip netns add failed: {first.stderr.strip()}")
    try:
        _ip("netns", "add", nodes[1])
        _ip(
            "link",
            "add",
            veth[0],
            "netns",
            nodes[0],
            "type",
            "veth",
            "peer",
            "name",
            veth[1],
            "netns",
            nodes[1],
        )
        for i, (ns, dev) in enumerate(zip(nodes, veth, strict=True)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{SUBNET.format(i + 1)}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        yield nodes
    finally:
        for ns in nodes:  # deleting a namespace deletes its end of the veth pair
            _ip("netns", "delete", ns, check=False)


def test_two_nodes_of_one_worker_equal_one_worker_with_twice_the_batch(
    tmp_path,
    two_nodes,
    data_parallel_inputs,
    free_port,
    cli_env,
    assert_two_workers_match_the_single_run,
):
    inputs = data_parallel_inputs
    base, data, two, one = inputs.base, inputs.data, inputs.two, inputs.one
    out = tmp_path / "mn"
    port = str(free_port)
    common = [
        sys.executable,
        "-m",
        "mindsft.cli",
        "finetune",
        "--config",
        str(two),
        "--train_dataset_dir",
        str(data),
        "--load_checkpoint",
        str(base),
        "--output_dir",
        str(out),
        "--use_parallel",
        "True",
        "--worker_num",
        "2",
        "--local_worker_num",
        "1",
        "--master_addr",
        SUBNET.format(1),
        "--master_port",
        port,
    ]
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", ns, *common, "--node_rank", str(rank)],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # msrun and its workers share the group killed below
        )
        for rank, ns in enumerate(two_nodes)
    ]
    single = Trainer(  # the reference trains while the nodes start up and sync
        load_finetune_config(one), RunPaths(str(data), str(base), str(tmp_path / "single"))
    )
    with finishing(procs) as logs:
        single.setup()
        single.train()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-2000:] for log in logs)
    node_logs = [(out / "msrun_log" / f"msrun_node{r}.log").read_text() for r in (0, 1)]
    assert ["Start scheduler process" in log for log in node_logs] == [True, False]
    assert sorted(f.name for f in (out / "msrun_log").glob("worker_*.log")) == [
        "worker_0.log",
        "worker_1.log",
    ]

    assert_two_workers_match_the_single_run(out, tmp_path / "single")


def test_workers_of_two_runs_never_train_in_one_cluster(
    tmp_path, two_nodes, data_parallel_inputs, free_port, cli_env
):
    """Node 1 of run Y points at the scheduler of run X (same address and port):
    the workers meet, compare their runs' ids and both runs stop in one line."""
    inputs = data_parallel_inputs
    common = [sys.executable, "-m", "mindsft.cli", "finetune", "--config", str(inputs.two)]
    common += ["--train_dataset_dir", str(inputs.data), "--load_checkpoint", str(inputs.base)]
    common += ["--use_parallel", "True", "--worker_num", "2", "--local_worker_num", "1"]
    common += ["--master_addr", SUBNET.format(1), "--master_port", str(free_port)]
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", ns, *common, "--node_rank", str(rank)]
            + ["--output_dir", str(tmp_path / run)],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for rank, (ns, run) in enumerate(zip(two_nodes, ("x", "y"), strict=True))
    ]
    with finishing(procs) as logs:
        pass
    for p, log in zip(procs, logs, strict=True):
        errors = [line for line in log.splitlines() if ": error:" in line]
        assert p.returncode == 2 and len(errors) == 1, log[-3000:]
        assert "workers of another run joined this run's cluster at 10.231.77.1:" in errors[0]
    assert not list(tmp_path.glob("*/checkpoint/rank_*/*.ckpt"))

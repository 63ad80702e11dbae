"""Fixtures for the workflow tests: the real Snakemake CLI of the project's venv run
in a temporary working directory with a config derived from config/config.yaml,
and a real single-node SLURM on localhost.

The SLURM is Debian's slurmctld, slurmd and munge, installed with apt-get when
missing (as root), configured in a temporary folder, started by hand (no systemd)
and stopped by their pid files. See ../shared/docs/SLURM.md for what is known to
work on this kind of machine."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# ---- Snakemake


def _env() -> dict:
    """The venv's bin first on PATH (as `make` does), offline hub."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
    }


def _offline_prefix() -> list:
    """`unshare -n` (a network namespace with no interfaces) where it works, so
    a command that reaches for the network fails instead of hanging."""
    probe = shutil.which("unshare") and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True, check=False
    )
    return ["unshare", "-n"] if probe and probe.returncode == 0 else []


def _write_config(workdir: Path, edit=None) -> Path:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    if edit:
        edit(config)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _snakemake(
    workdir: Path, *args, check=True, offline=False, timeout=900, extra_env=None, snakefile=None
):
    cmd = [
        *(_offline_prefix() if offline else []),
        str(BIN / "snakemake"),
        "-s",
        str(snakefile or ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        f"--configfile={workdir / 'config.yaml'}",
        *args,
    ]
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**_env(), **(extra_env or {})},
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout[-3000:]}"
            f"\n{result.stderr[-6000:]}"
        )
    return result


def _planned_jobs(workdir: Path, *targets) -> dict:
    out = _snakemake(workdir, "-n", *targets, "--quiet", "rules").stdout
    jobs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="session")
def repo() -> Path:
    """The checkout under test (Snakefile, rules/, config/, ...)."""
    return ROOT


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """The bin folder of the venv running the tests (snakemake, snakefmt, ...)."""
    return BIN


@pytest.fixture(scope="session")
def write_config():
    """write_config(workdir, edit=None): config/config.yaml, changed by
    `edit(config)` if given, written to workdir/config.yaml; returns its path."""
    return _write_config


@pytest.fixture(scope="session")
def snakemake():
    """snakemake(workdir, *args, check=True, offline=False, timeout=900,
    extra_env=None, snakefile=None): run the project's Snakefile (or `snakefile`)
    in `workdir` with workdir/config.yaml; fail the test on a non-zero exit
    unless check=False; offline runs it with no network. Returns the result."""
    return _snakemake


@pytest.fixture(scope="session")
def planned_jobs():
    """planned_jobs(workdir, *targets): {rule: count} of the jobs a dry run would
    execute ({} when everything is up to date)."""
    return _planned_jobs


# ---- a local SLURM

SLURM_PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
SLURM_BINARIES = ("slurmctld", "slurmd", "munged", "sbatch")
# Slurm's own default path: Snakemake's job step clears every SLURM_* variable
# (SLURM_CONF too) before it calls srun, so the config must be where srun looks.
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by mindsft's tests (tests/workflow/conftest.py); removed after them\n"
MUNGE_RUN = Path("/run/munge")


@dataclass
class LocalSlurm:
    """A running single-node SLURM: what a test needs to submit to it."""

    env: dict  # environment for the SLURM commands and Snakemake (SLURM_CONF)
    host: str  # the node's name (this host)
    memory_mb: int  # memory the node offers SLURM
    profile: Path  # the project's SLURM Snakemake profile


def _slurm_unavailable() -> str:
    """Why a local SLURM cannot be had here ('' when it can)."""
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    if SLURM_CONF.exists() and not SLURM_CONF.read_text().startswith(MARK):
        return f"{SLURM_CONF} belongs to another SLURM set-up; not replacing it"
    if not all(shutil.which(b) for b in SLURM_BINARIES) and not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get to install it"
    return ""


def _install_slurm() -> None:
    """apt-get install Debian's SLURM and munge if any binary is missing."""
    if all(shutil.which(b) for b in SLURM_BINARIES):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *SLURM_PACKAGES],
        check=True,
        env=env,
        capture_output=True,
    )


def _hostname() -> str:
    return socket.gethostname().split(".")[0]


def _node_memory_mb() -> int:
    """What the test node offers SLURM: 90% of this machine's memory."""
    total = subprocess.run(["free", "-m"], capture_output=True, text=True, check=True).stdout
    return int(int(total.split("\n")[1].split()[1]) * 0.9)


def _slurm_conf(root: Path) -> str:
    """One node (this host, all its CPUs, 90% of its memory), one partition."""
    host = _hostname()
    return f"""{MARK}ClusterName=mindsft-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=300
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
NodeName={host} CPUs={os.cpu_count()} RealMemory={_node_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(pidfile: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 15)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def _wait(predicate, what: str, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"local SLURM: {what} did not happen within {seconds}s")


def _node_idle(env: dict) -> bool:
    out = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%t"], env=env, capture_output=True, text=True, check=False
    ).stdout
    return out.strip() == "idle"


def _start_munge() -> "Path | None":
    """Start munged unless one runs already; its pid file, or None."""
    MUNGE_RUN.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_RUN, "munge", "munge")
    if (MUNGE_RUN / "munge.socket.2").exists():
        return None
    pid = MUNGE_RUN / "mindsft-test-munged.pid"  # munged runs as munge
    subprocess.run(
        ["runuser", "-u", "munge", "--", "munged", "--pid-file", str(pid)],
        check=True,
        capture_output=True,
    )
    _wait(lambda: (MUNGE_RUN / "munge.socket.2").exists(), "munged start")
    return pid


@pytest.fixture(scope="session")
def slurm_installed():
    """Skip unless a local SLURM can be had here; install it when missing."""
    why = _slurm_unavailable()
    if why:
        pytest.skip(why)
    _install_slurm()


@pytest.fixture
def slurm_conf(slurm_installed, tmp_path) -> Path:
    """A slurm.conf for this host in tmp_path (enough for scontrol; nothing started)."""
    path = tmp_path / "slurm.conf"
    path.write_text(_slurm_conf(tmp_path))
    return path


@pytest.fixture(scope="session")
def local_slurm(slurm_installed, tmp_path_factory):
    """munged, slurmctld and slurmd started for the session, stopped after it
    (slurmd first); yields a LocalSlurm."""
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(_slurm_conf(root))
    env = {**os.environ, "SLURM_CONF": str(SLURM_CONF)}
    munge_pid = _start_munge()
    try:
        for daemon in ("slurmctld", "slurmd"):
            cmd = [daemon, "-f", str(SLURM_CONF)]
            subprocess.run(cmd, check=True, env=env, capture_output=True)
        _wait(lambda: _node_idle(env), "the node going idle")
        yield LocalSlurm(env, _hostname(), _node_memory_mb(), ROOT / "profiles" / "slurm")
    finally:
        _stop(root / "slurmd.pid")
        _stop(root / "slurmctld.pid")
        if munge_pid is not None:
            _stop(munge_pid)
        SLURM_CONF.unlink(missing_ok=True)

"""A real single-node SLURM on localhost for the tests: Debian's slurmctld,
slurmd and munge, installed with apt-get when missing (as root), configured in a
temporary folder, started by hand (no systemd) and stopped by their pid files.
See ../shared/docs/SLURM.md for what is known to work on this kind of machine."""

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
# Slurm's own default path: Snakemake's job step clears every SLURM_* variable
# (SLURM_CONF too) before it calls srun, so the config must be where srun looks.
CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by mindsft's tests (tests/workflow/slurm.py); removed after them\n"
PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "slurm"
MUNGE_RUN = Path("/run/munge")


def unavailable() -> str:
    """Why a local SLURM cannot be had here ('' when it can)."""
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    if CONF.exists() and not CONF.read_text().startswith(MARK):
        return f"{CONF} belongs to another SLURM set-up; not replacing it"
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch")):
        return ""
    if not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get to install it"
    return ""


def install() -> None:
    """apt-get install Debian's SLURM and munge if any binary is missing."""
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env, capture_output=True
    )


def hostname() -> str:
    return socket.gethostname().split(".")[0]


def node_memory_mb() -> int:
    """What the test node offers SLURM: 90% of this machine's memory."""
    total = subprocess.run(["free", "-m"], capture_output=True, text=True, check=True).stdout
    return int(int(total.split("\n")[1].split()[1]) * 0.9)


def slurm_conf(root: Path) -> str:
    """One node (this host, all its CPUs, 90% of its memory), one partition."""
    host = hostname()
    mem_mb = node_memory_mb()
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
NodeName={host} CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN
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


@contextlib.contextmanager
def local_slurm(root: Path):
    """Start munged, slurmctld and slurmd; yield the environment (SLURM_CONF) that
    the SLURM commands and Snakemake need; stop them again, slurmd first."""
    install()
    root = Path(root)
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if unavailable():
        raise RuntimeError(unavailable())
    conf = CONF
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(slurm_conf(root))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    MUNGE_RUN.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_RUN, "munge", "munge")
    munge_pid = MUNGE_RUN / "mindsft-test-munged.pid"  # munged runs as munge
    started_munge = not (MUNGE_RUN / "munge.socket.2").exists()
    if started_munge:
        subprocess.run(
            ["runuser", "-u", "munge", "--", "munged", "--pid-file", str(munge_pid)],
            check=True,
            capture_output=True,
        )
        _wait(lambda: (MUNGE_RUN / "munge.socket.2").exists(), "munged start")
    try:
        subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env, capture_output=True)
        subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env, capture_output=True)

        def idle():
            out = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%t"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            return out.strip() == "idle"

        _wait(idle, "the node going idle")
        yield env
    finally:
        _stop(root / "slurmd.pid")
        _stop(root / "slurmctld.pid")
        if started_munge:
            _stop(munge_pid)
        CONF.unlink(missing_ok=True)

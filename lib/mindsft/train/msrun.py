"""The launcher side of a data-parallel run: start MindSpore's `msrun` and see
it through, as MindFormers' msrun_launcher.sh does, without what that leaves to
chance.

- The master port: on a single node a free one when the asked one is taken
  (with a line saying which); with several nodes, which must all agree on it, a
  taken port is an error.
- msrun runs in a session of its own, so a Ctrl+C at the terminal reaches only
  the launcher (msrun's own SIGINT handler would SIGKILL the workers), and with
  PR_SET_PDEATHSIG, so it dies with the launcher. Every process msrun starts runs
  `python -m mindsft.train.worker`, which dies with msrun and with the launcher
  (`signals.die_with_parent`) and records its exit status in a status folder.
- The launcher watches that folder: the first worker that fails, and a scheduler
  that dies while workers wait for it, end the whole run at once, with that
  process's error line or last traceback lines. SIGTERM/SIGINT are forwarded to
  the workers, which stop at the next step boundary and checkpoint; a second
  SIGINT kills everything.
- Each run gets an id the workers compare after joining the cluster
  (`launch.check_run_id`), so workers of two runs never train together.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mindsft.errors import MindsftError
from mindsft.train import signals

RUN_ID_ENV = "MINDSFT_RUN_ID"
STATUS_ENV = "MINDSFT_STATUS_DIR"
POLL_S = 0.2
SCHEDULER_GRACE_S = 60.0  # how long a scheduler may outlive workers that all succeeded


@dataclass
class Cluster:
    """msrun's flags for this node."""

    worker_num: int
    local_worker_num: int
    log_dir: Path
    master_addr: str = "127.0.0.1"
    master_port: int = 8118
    node_rank: int = 0
    cluster_time_out: int | None = None
    """Seconds workers wait for the cluster to form (msrun's default when None)."""
    echo: bool = False
    """Copy msrun's output (which tails the worker logs) to stderr as it comes."""
    env: dict = field(default_factory=dict)

    @property
    def single_node(self) -> bool:
        return self.local_worker_num == self.worker_num


def port_in_use(addr: str, port: int) -> bool:
    """True when a server could not bind `addr:port` now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((addr, port))
        except OSError:
            return True
    return False


def free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((addr, 0))
        return sock.getsockname()[1]


def _local(addr: str) -> bool:
    try:
        with socket.socket() as sock:
            sock.bind((addr, 0))
        return True
    except OSError:
        return False


def choose_port(cluster: Cluster, say) -> int:
    """The master port to use: the asked one, or on one node a free one instead of
    a taken one; on several nodes a taken port on this (master) node is an error."""
    addr, port = cluster.master_addr, cluster.master_port
    if not _local(addr) or not port_in_use(addr, port):
        return port
    if cluster.single_node:
        new = free_port(addr)
        say(f"master port {port} is in use on {addr}; using port {new} instead")
        return new
    raise MindsftError(
        f"master port {port} is in use on {addr}; every node must use the same port: "
        "choose a free one (--master_port) on all nodes"
    )


def run_id(child_argv: list, cluster: Cluster) -> str:
    """This run's id: random on one node; on several, derived from what every node
    is given alike (the command, the cluster, the SLURM job) so that they agree."""
    if cluster.single_node:
        return uuid.uuid4().hex[:16]
    same = [child_argv, cluster.worker_num, cluster.master_addr, cluster.master_port]
    same.append(os.environ.get("SLURM_JOB_ID", ""))
    return hashlib.sha256(json.dumps(same).encode()).hexdigest()[:16]


def msrun_command(child_argv: list, cluster: Cluster) -> list:
    """The msrun command line running `python -m mindsft.train.worker CHILD_ARGV`."""
    cmd = [str(Path(sys.executable).with_name("msrun"))]
    cmd += ["--worker_num", str(cluster.worker_num)]
    cmd += ["--local_worker_num", str(cluster.local_worker_num)]
    cmd += ["--master_port", str(cluster.master_port)]
    if not cluster.single_node:
        cmd += ["--master_addr", cluster.master_addr, "--node_rank", str(cluster.node_rank)]
    cmd += ["--log_dir", str(cluster.log_dir), "--join", "True"]
    cmd += ["--tail_worker_log", "-2"]  # no rank: msrun starts no `tail -f` to outlive it
    if cluster.cluster_time_out is not None:
        cmd += ["--cluster_time_out", str(cluster.cluster_time_out)]
    return cmd + ["python", "-m", "mindsft.train.worker", *child_argv]


# `python -c WITH_PDEATHSIG LAUNCHER_PID CMD...` runs CMD so that it dies with the
# launcher: PR_SET_PDEATHSIG survives exec, and a launcher already gone is caught
# by the parent check (a preexec_fn would run Python after fork in a launcher that
# may have threads)
WITH_PDEATHSIG = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def error_report(log: Path, limit: int = 12) -> str | None:
    """What a failed process's log says went wrong: its `mindsft ...: error:` line,
    else the last lines of its last Python traceback, else its last [ERROR] line."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        m = re.search(r"mindsft \S+: error: (.*)", line)
        if m:
            return m.group(1)
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if starts:
        block = [lines[starts[-1]]]
        for line in lines[starts[-1] + 1 :]:
            if not line.strip() or line.startswith(("[", "---")):
                break
            block.append(line)
        return "\n".join(block[-limit:])
    errors = [line for line in lines if line.startswith("[ERROR]")]
    return errors[-1] if errors else None


@dataclass
class Spawned:
    """A process msrun started, as its status files describe it."""

    pid: int
    role: str
    rank: str
    start: str
    folder: Path

    def alive(self) -> bool:
        return signals.alive(self.pid, self.start)

    def exit_code(self) -> int | None:
        try:
            return int((self.folder / f"{self.pid}.exit").read_text())
        except (OSError, ValueError):
            return None

    def failed(self) -> bool:
        """Ended with an error, or killed before it could say how it ended."""
        rc = self.exit_code()
        return (rc is not None and rc != 0) or (rc is None and not self.alive())

    def kill(self) -> None:
        if self.alive():
            try:
                if self.role == "MS_WORKER":  # msrun puts each worker in its own session
                    os.killpg(self.pid, signal.SIGKILL)
                else:
                    os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def spawned(folder: Path) -> list:
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        found.append(Spawned(int(path.stem), info["role"], info["rank"], info["start"], folder))
    return found


class Forwarder:
    """In the launcher: SIGTERM/SIGINT are recorded (`signum`, `sigints`) for the
    watch loop to forward, instead of ending the launcher."""

    def __init__(self):
        self.signum, self.sigints, self._previous = None, 0, {}

    def _handle(self, signum, frame) -> None:
        self.signum = self.signum or signum
        self.sigints += signum == signal.SIGINT

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in signals.STOP_SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def kill_all(proc: subprocess.Popen, folder: Path) -> None:
    """SIGKILL every process of the run still alive: workers (each its own session),
    the scheduler, msrun and anything else in msrun's session."""
    for p in spawned(folder):
        p.kill()
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _stop_line(logs) -> str | None:
    for log in logs:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        m = re.search(r"^(mindsft \S+: stopped by .*)$", text, re.MULTILINE)
        if m:
            return m.group(1)
    return None


class Watch:
    """The launcher's loop over a running msrun: forward stop signals, echo rank 0's
    log when asked, and end the run at the first failure."""

    def __init__(self, proc, folder: Path, cluster: Cluster, fwd: Forwarder, say):
        self.proc, self.folder, self.cluster, self.fwd, self.say = proc, folder, cluster, fwd, say
        self.signalled = set()
        self.echoed = 0
        self.since = {}  # condition -> when it was first seen holding

    def until_done(self) -> int:
        while True:
            found = spawned(self.folder)
            workers = sorted(
                (p for p in found if p.role == "MS_WORKER"), key=lambda p: int(p.rank or 0)
            )
            self._forward(workers)
            if self.fwd.sigints >= 2:
                self.say("second SIGINT: killing every worker now")
                return 128 + signal.SIGINT
            if self.cluster.echo:
                self._echo(workers)
            outcome = self._judge(found, workers)
            if outcome is not None:
                return outcome
            time.sleep(POLL_S)

    def _forward(self, workers) -> None:
        if self.fwd.signum is None:
            return
        for w in workers:
            if w.pid not in self.signalled and w.alive():
                os.kill(w.pid, self.fwd.signum)
                self.signalled.add(w.pid)

    def _log(self, p: Spawned) -> Path:
        name = "scheduler.log" if p.role == "MS_SCHED" else f"worker_{p.rank}.log"
        return self.cluster.log_dir / name

    def _echo(self, workers) -> None:
        if not workers:
            return
        try:
            with open(self._log(workers[0]), "rb") as fh:
                fh.seek(self.echoed)
                chunk = fh.read()
        except OSError:
            return
        self.echoed += len(chunk)
        sys.stderr.write(chunk.decode(errors="replace"))
        sys.stderr.flush()

    def _judge(self, found, workers) -> int | None:
        """The run's exit status once it is decided, else None; a failure raises."""
        stopping = self.fwd.signum is not None
        failed = [w for w in workers if w.failed()]
        stopped = [w for w in failed if w.exit_code() in (128 + s for s in signals.STOP_SIGNALS)]
        if failed and not stopping and len(stopped) < len(failed):
            raise self._failure(next(w for w in failed if w not in stopped))
        if self.proc.poll() is not None or (
            (failed or stopping) and not any(w.alive() for w in workers)
        ):
            return self._result(workers)
        waiting = any(w.alive() and w.exit_code() is None for w in workers)
        for sched in (p for p in found if p.role == "MS_SCHED" and p.failed()):
            if sched.exit_code() or self._held("scheduler gone", waiting, 5.0):
                raise self._failure(sched)
        done = len(workers) == self.cluster.local_worker_num and all(
            w.exit_code() == 0 for w in workers
        )
        return 0 if self._held("workers done", done, SCHEDULER_GRACE_S) else None

    def _held(self, what: str, condition: bool, seconds: float) -> bool:
        """True once `condition` has held for `seconds` on consecutive calls."""
        if not condition:
            self.since.pop(what, None)
            return False
        start = self.since.setdefault(what, time.monotonic())
        return time.monotonic() - start >= seconds

    def _failure(self, p: Spawned) -> MindsftError:
        log = self._log(p)
        report = error_report(log)
        rc = p.exit_code()
        how = f"exited with {rc}" if rc is not None else "was killed"
        if p.role == "MS_SCHED":
            where = f"{self.cluster.master_addr}:{self.cluster.master_port}"
            last = (report or "no error in its log").splitlines()[-1]
            return MindsftError(f"msrun's scheduler at {where} {how} ({log}): {last}")
        if report and "\n" not in report:
            return MindsftError(report)
        tail = f"; the end of its traceback:\n{report}" if report else f"; see {log}"
        return MindsftError(f"worker {p.rank} {how}{tail}")

    def _result(self, workers) -> int:
        codes = [w.exit_code() for w in workers]
        signum = self.fwd.signum or next(
            (c - 128 for c in codes if c in (128 + s for s in signals.STOP_SIGNALS)), None
        )
        if signum is not None:
            line = _stop_line(self._log(w) for w in workers)
            name = signals.signal_name(signum)
            if line is None:
                line = f"stopped by {name} before the workers could checkpoint: none written"
            self.say(re.sub(r"stopped by SIG[A-Z]+", f"stopped by {name}", line))  # the signal sent
            return 128 + signum
        if len(workers) == self.cluster.local_worker_num and all(c == 0 for c in codes):
            return 0
        failed = [w for w in workers if w.failed()]
        if failed:
            raise self._failure(failed[0])
        log = self.cluster.log_dir / f"msrun_node{self.cluster.node_rank}.log"
        last = error_report(log) or "no worker started"
        raise MindsftError(f"msrun exited with {self.proc.returncode} ({log}): {last}")


def remove_abandoned(log_dir: Path) -> None:
    """Delete the status folders of launchers that are gone (killed before they
    could clean up)."""
    for folder in log_dir.glob(".status-*"):
        try:
            pid, _, start = (folder / "launcher").read_text().partition(":")
        except OSError:
            pid, start = "", ""
        if not (pid.isdigit() and signals.alive(int(pid), start)):
            shutil.rmtree(folder, ignore_errors=True)


def run_msrun(child_argv: list, cluster: Cluster, say) -> int:
    """Run `mindsft CHILD_ARGV` on this node's workers under msrun and wait: 0 when
    every worker succeeded, 128+signal when SIGTERM/SIGINT stopped the run (the
    workers checkpoint first); a failure raises MindsftError with the failed
    process's own report."""
    cluster.log_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned(cluster.log_dir)
    cluster.master_port = choose_port(cluster, say)
    rid = run_id(child_argv, cluster)
    folder = cluster.log_dir / f".status-{rid}-node{cluster.node_rank}"
    folder.mkdir(parents=True, exist_ok=True)
    launcher = signals.launcher_env()
    (folder / "launcher").write_text(launcher[signals.LAUNCHER_ENV])
    env = {**os.environ, **cluster.env, RUN_ID_ENV: rid, STATUS_ENV: str(folder), **launcher}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = cluster.log_dir / f"msrun_node{cluster.node_rank}.log"
    try:
        with open(log, "wb") as out, Forwarder() as fwd:
            proc = subprocess.Popen(
                [sys.executable, "-c", WITH_PDEATHSIG, str(os.getpid())]
                + msrun_command(child_argv, cluster),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl+C at the terminal reaches only the launcher
            )
            try:
                return Watch(proc, folder, cluster, fwd, say).until_done()
            finally:
                kill_all(proc, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

"""Signals around a training run.

- `StopSignals`, in the process that trains: the first SIGTERM (how SLURM
  preempts and cancels) or SIGINT (Ctrl+C) is recorded instead of killing, so the
  loop can stop at the next step boundary and checkpoint. A later SIGINT ends the
  process at once, as if no handler were there; a later SIGTERM is ignored (SLURM
  may signal a worker directly and through its launcher). MindSpore's runtime
  puts a SIGINT handler of its own in place while it runs compiled steps
  (mindspore::SignalGuard, whose DefaultIntHandler sends the process SIGTERM), so
  a SIGINT that arrives during a step is recorded as SIGTERM; the launcher, which
  runs no MindSpore, reports the signal it was sent.
- `die_with_parent`, in every process msrun starts: the kernel kills it when its
  parent (msrun) dies (PR_SET_PDEATHSIG), and a watchdog thread kills it when the
  mindsft launcher that started msrun is gone, which also covers a launcher that
  died before the prctl took effect.
"""

import ctypes
import os
import signal
import threading
import time

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LAUNCHER_ENV = "MINDSFT_LAUNCHER"  # "pid:start time" of the launcher that started msrun
_PR_SET_PDEATHSIG = 1


class StopSignals:
    """While entered, `signum` holds the first SIGTERM/SIGINT received (None until
    then). Outside the main thread it records nothing (Python delivers signals
    only there)."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
        elif signum == signal.SIGINT:
            self.restore()
            os.kill(os.getpid(), signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def reclaim(self) -> None:
        """Install the handlers again, in place of the SIGINT handler MindSpore's
        runtime leaves behind after running a compiled step (see above)."""
        for sig in self._previous:
            signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(self, *exc):
        self.restore()


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _stat(pid: int) -> list | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, /proc/PID/stat field
    22): with the pid, it names one process even after the pid is reused."""
    fields = _stat(pid)
    return fields[19].decode() if fields else None


def alive(pid: int, start: str) -> bool:
    """True while the process `pid` that started at `start` runs (not a zombie)."""
    fields = _stat(pid)
    return bool(fields) and fields[19].decode() == start and fields[0] not in (b"Z", b"X")


def launcher_env() -> dict:
    """The environment entry naming this process as the launcher of msrun's workers."""
    return {LAUNCHER_ENV: f"{os.getpid()}:{process_start(os.getpid())}"}


def _watch(pid: int, start: str, every: float) -> None:
    while alive(pid, start):
        time.sleep(every)
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(every: float = 0.5) -> None:
    """Make this process end when its parent does, and when the launcher named in
    the environment does."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    pid, _, start = os.environ.get(LAUNCHER_ENV, "").partition(":")
    if pid.isdigit():
        threading.Thread(target=_watch, args=(int(pid), start, every), daemon=True).start()


class Stopped(Exception):
    """A run stopped at a step boundary by SIGTERM/SIGINT; the process should exit
    with 128 + signum after printing the message."""

    def __init__(self, signum: int, detail: str):
        super().__init__(f"stopped by {signal_name(signum)} {detail}")
        self.signum = signum

"""One run per output_dir: `output_dir/.lock`, held for the whole run.

The lock is an flock(2) on the file, so the kernel releases it when its holder
dies however it dies; the file's content (pid, host, start time, command) only
names the holder. A second run on the same output_dir finds the flock taken and
refuses, naming the holder. A lock file whose flock is free was left by a run
that died: it is taken over, with a line saying whose it was. In a multi-node
run each node's launcher holds its own `.lock.node{R}`.
"""

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from mindsft.atomic import cannot_write
from mindsft.errors import MindsftError


def lock_path(output_dir, node_rank: int = 0) -> Path:
    name = ".lock" if not node_rank else f".lock.node{node_rank}"
    return Path(output_dir) / name


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (ValueError, KeyError, TypeError):
        return "a holder that left no details"


class RunLock:
    """`with RunLock(output_dir, say=print):` holds output_dir's lock or raises
    MindsftError naming the run that holds it."""

    def __init__(self, output_dir, node_rank: int = 0, say=None):
        self.path = lock_path(output_dir, node_rank)
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._fd = None
        self._made = False

    def _open_locked(self) -> tuple:
        """(fd, previous content) with the flock held on the file now at the path."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 1 << 16, 0).decode(errors="replace")
                os.close(fd)
                raise MindsftError(
                    f"{self.path.parent}: another run is using this output_dir ({_holder(text)})"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its previous holder removed meanwhile
                return fd, os.pread(fd, 1 << 16, 0).decode(errors="replace")
            os.close(fd)

    def __enter__(self):
        self._made = not self.path.parent.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, previous = self._open_locked()
        except OSError as exc:  # a read-only or full output location: one line, named
            raise cannot_write(self.path, exc) from None
        self._fd = fd
        if previous.strip():
            self.say(
                f"{self.path}: taking over the lock of a run that is gone ({_holder(previous)})"
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError as exc:
            self.__exit__()
            raise cannot_write(self.path, exc) from None
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # before the flock goes: see _open_locked
            os.close(self._fd)
            self._fd = None
            if self._made and not any(self.path.parent.iterdir()):
                self.path.parent.rmdir()  # a run that wrote nothing leaves no folder

"""Where a rule's output goes: its `log:` file."""

import contextlib
import os
import sys


@contextlib.contextmanager
def log_to(path):
    """Send this process's stdout and stderr to `path` at the file-descriptor
    level, so MindSpore's C++ logs and child processes land there too."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(path, "w") as fh:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)

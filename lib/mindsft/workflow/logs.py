"""Where a rule's output goes: its `log:` file."""

import contextlib
import os
import sys

from mindsft.errors import MindsftError, os_error_line


@contextlib.contextmanager
def log_to(path):
    """Send this process's stdout and stderr to `path` at the file-descriptor
    level, so MindSpore's C++ logs and child processes land there too. A
    MindsftError or an operating-system error (a full disk) ends the process as
    the `mindsft` command does: one line in the log, no traceback, exit status 2."""
    sys.stdout.flush()
    sys.stderr.flush()
    failed = False
    with open(path, "w") as fh:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        except MindsftError as exc:
            print(f"mindsft: error: {exc}", file=sys.stderr)
            failed = True
        except OSError as exc:
            print(f"mindsft: error: {os_error_line(exc)}", file=sys.stderr)
            failed = True
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
    if failed:
        sys.exit(2)

"""Write outputs under a temporary name beside the target and rename at the end,
so that a failed or killed step never leaves a half-written file behind."""

import contextlib
import os
import shutil
import uuid
from pathlib import Path


def temp_sibling(path) -> Path:
    """A unique temporary name in the same folder as `path` (same filesystem, so
    the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(path, *, suffixes=()):
    """Yield a temporary path to write instead of `path`; on success rename it to
    `path` (a file or a folder), on any exception remove it.

    `suffixes` names companion files written beside the temporary path with the
    same stem plus a suffix (MindRecord's `.db`): they are renamed alongside.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
    except BaseException:
        for p in [tmp, *(Path(f"{tmp}{s}") for s in suffixes)]:
            _remove(p)
        raise
    for s in suffixes:
        os.replace(f"{tmp}{s}", f"{path}{s}")
    if path.is_dir() and tmp.is_dir():
        _remove(path)
    os.replace(tmp, path)

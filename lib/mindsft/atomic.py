"""Write outputs under a temporary name beside the target and rename at the end,
so that a failed or killed step never leaves a half-written file behind.

An operating-system error while writing (disk full, read-only location, the
target an existing folder where a file goes) ends as one MindsftError naming the
target, never the temporary name, and the temporary files are gone."""

import contextlib
import errno
import os
import shutil
import uuid
from pathlib import Path

from mindsft.errors import MindsftError

# errors of a write call that name no file: they concern the file being written
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def temp_sibling(path) -> Path:
    """A unique temporary name in the same folder as `path` (same filesystem, so
    the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def cannot_write(path, reason) -> MindsftError:
    """The one-line error for an output that cannot be written: `reason` is an
    errno number or an OSError."""
    if isinstance(reason, OSError):
        reason = reason.strerror or str(reason)
    elif isinstance(reason, int):
        reason = os.strerror(reason)
    return MindsftError(f"{path}: cannot write ({reason})")


def _remove(path: Path) -> None:
    """Remove a file or folder if it is there; never raises (a cleanup that fails,
    on a read-only filesystem say, must not mask the error that caused it)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _remove_temps(tmp: Path) -> None:
    """Remove `tmp` and everything beside it whose name extends it."""
    with contextlib.suppress(OSError):
        for p in tmp.parent.iterdir():
            if p.name.startswith(tmp.name):
                _remove(p)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path, kind: str | None = None) -> None:
    """Fail now, in one line, unless `path` can be written: it (when it is a folder),
    or else its folder or the nearest one that exists, takes a new file; and, with
    `kind` "file" or "dir", `path` is not already the other kind. Creates nothing
    that stays. Commands that compute for long call it before they start."""
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise cannot_write(path, errno.EISDIR)
    if kind == "dir" and path.exists() and not path.is_dir():
        raise cannot_write(path, errno.ENOTDIR)
    # a folder that is there is written into (or replaced: the same filesystem, mostly)
    folder = path if path.is_dir() else _nearest_existing(path.parent.absolute())
    if not folder.is_dir():
        raise cannot_write(path, f"{folder}: {os.strerror(errno.ENOTDIR)}")
    probe = temp_sibling(folder / path.name)
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise cannot_write(path, exc) from None
    _remove(probe)


def _as_target(exc: OSError, tmp: Path, path: Path) -> MindsftError | None:
    """The OSError `exc`, raised while writing `tmp` for `path`, as one line naming
    `path` (or the file inside it); None when it concerns another file."""
    names = [os.fspath(n) for n in (exc.filename2, exc.filename) if n is not None]
    for name in names:  # a copy's or rename's destination is its second name
        if name.startswith(str(tmp)):
            return cannot_write(f"{path}{name[len(str(tmp)) :]}", exc)
    if not names and exc.errno in _WRITE_ERRNOS:
        return cannot_write(path, exc)
    return None


def _move_into_place(tmp: Path, path: Path, suffixes) -> None:
    """Rename `tmp` (and its companions) to `path`; a folder replaces a folder, a
    file a file. On failure the temporary files go and the error names `path`."""
    if tmp.exists() and path.exists() and tmp.is_dir() != path.is_dir():
        raise cannot_write(path, errno.ENOTDIR if tmp.is_dir() else errno.EISDIR)
    for s in suffixes:
        if Path(f"{path}{s}").is_dir():
            raise cannot_write(f"{path}{s}", errno.EISDIR)
    try:
        for s in suffixes:
            os.replace(f"{tmp}{s}", f"{path}{s}")
        if path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        raise cannot_write(path, exc) from None


@contextlib.contextmanager
def atomic_output(path, *, suffixes=()):
    """Yield a temporary path to write instead of `path`; on success rename it to
    `path` (a file or a folder), on any exception remove it.

    `suffixes` names companion files written beside the temporary path with the
    same stem plus a suffix (MindRecord's `.db`): they are renamed alongside.
    On failure every file whose name starts with the temporary name goes too
    (a library's own scratch files named after it: MindSpore's `.tmp`).
    A location that takes no new file fails on entry, before any work is done.
    """
    path = Path(path)
    check_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    tmp = temp_sibling(path)
    try:
        yield tmp
        _move_into_place(tmp, path, suffixes)
    except OSError as exc:
        _remove_temps(tmp)
        mapped = _as_target(exc, tmp, path)
        if mapped is None:
            raise
        raise mapped from None
    except BaseException:
        _remove_temps(tmp)
        raise

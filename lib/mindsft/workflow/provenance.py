"""sha256 of inputs and of the code, so two results can be told apart without
rerunning: `manifest.json` in every results/{run}/ckpt/."""

import hashlib
import json
import subprocess
from pathlib import Path

import mindsft
from mindsft.atomic import atomic_output
from mindsft.files import file_sha256

LIB = Path(mindsft.__file__).resolve().parent


def tree_sha256(folder) -> dict:
    """{relative path: sha256} for every file under `folder`, sorted."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def source_sha256(*subpackages: str) -> str:
    """One sha256 over the Python sources of mindsft subpackages (all of mindsft
    when none is named): it changes exactly when that code changes, so a rule
    carrying it as a param reruns when its stage's code does."""
    digest = hashlib.sha256()
    roots = [LIB / s for s in subpackages] or [LIB]
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            digest.update(str(path.relative_to(LIB)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def git_state(root) -> dict:
    """Commit of the checkout at `root` and whether it has local changes; empty
    where it is not a git checkout."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "lib"))
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git_commit": commit, "git_dirty": dirty}


def code_version() -> dict:
    """mindsft's version, the sha256 of its sources, and the git commit."""
    return {
        "mindsft_version": mindsft.__version__,
        "source_sha256": source_sha256(),
        **git_state(LIB.parent.parent),
    }


def describe(path) -> dict:
    """{"path", "sha256"} of a file, or {"path", "files": {...}} of a folder."""
    path = Path(path)
    if path.is_dir():
        return {"path": str(path), "files": tree_sha256(path)}
    return {"path": str(path), "sha256": file_sha256(path)}


def write_manifest(
    out, *, run: str, inputs: dict, outputs: dict, extra: "dict | None" = None
) -> dict:
    """Write manifest.json: the sha256 of every input (name -> path) and output
    (name -> file, written beside the manifest), and the code version. No timestamps:
    the same inputs give the same file."""
    manifest = {
        "run": run,
        "code": code_version(),
        "inputs": {name: describe(p) for name, p in inputs.items()},
        "outputs": {name: {"sha256": file_sha256(p)} for name, p in outputs.items()},
        **(extra or {}),
    }
    with atomic_output(out) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest

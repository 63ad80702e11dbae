"""sha256 of inputs and of the code, so two results can be told apart without
rerunning: `manifest.json` in every results/{run}/ckpt/, and the code a rule runs
(its script and the mindsft modules that script imports), which the rules carry as
a param so that a rule reruns exactly when its code changes."""

import ast
import hashlib
import json
import subprocess
from pathlib import Path

import mindsft
from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError
from mindsft.files import file_sha256

LIB = Path(mindsft.__file__).resolve().parent
PACKAGE = LIB.name


def tree_sha256(folder) -> dict:
    """{relative path: sha256} for every file under `folder`, sorted."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _sources_sha256(files) -> str:
    """One sha256 over the name and bytes of each file: names relative to the
    package (the file name outside it), so the checkout's location does not count."""
    digest = hashlib.sha256()
    for path in files:
        name = path.relative_to(LIB) if path.is_relative_to(LIB) else path.name
        digest.update(str(name).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def source_sha256() -> str:
    """One sha256 over every Python source of mindsft."""
    return _sources_sha256(sorted(LIB.rglob("*.py")))


def module_file(name: str) -> "Path | None":
    """The source file of the mindsft module `name` (dotted), None for other names."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = LIB.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_of(path: Path) -> "str | None":
    """Dotted package a mindsft source file belongs to (what `from . import` means)."""
    if not path.is_relative_to(LIB):
        return None
    return ".".join((PACKAGE, *path.relative_to(LIB).parent.parts))


def _imports(tree: ast.AST, package: "str | None"):
    """(module, must_exist, line) for each name an import statement in `tree`
    brings in: `import a.b` must find a.b; `from a import b` must find a, and
    b may be a module or a name inside a."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, True, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if package is None:
                    continue
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            yield base, True, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", False, node.lineno


def imported_modules(path) -> set:
    """The mindsft modules (and their parent packages) that the Python file `path`
    imports anywhere in it, function bodies included. An import of a mindsft
    module that does not exist is an error naming the file and line."""
    path = Path(path).resolve()
    tree = ast.parse(path.read_bytes(), filename=str(path))
    names = set()
    for name, must_exist, line in _imports(tree, _package_of(path)):
        if module_file(name) is not None:
            names.add(name)
        elif must_exist and name.split(".")[0] == PACKAGE:
            raise MindsftError(f"{path}:{line}: imports {name}, which is not a mindsft module")
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 2)}


def code_files(script) -> list:
    """`script` and every mindsft source file it imports, transitively, sorted."""
    script = Path(script).resolve()
    seen, todo = {script}, [script]
    while todo:
        for name in imported_modules(todo.pop()):
            path = module_file(name)
            if path not in seen:
                seen.add(path)
                todo.append(path)
    return sorted(seen)


def code_sha256(script) -> str:
    """One sha256 over `script` and the mindsft code it imports (code_files): it
    changes when that code changes and not when other modules do."""
    return _sources_sha256(code_files(script))


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

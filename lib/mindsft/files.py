"""Reading the small structured files mindsft takes (JSON, YAML) and hashing files,
each failure one line that names the file: the one place these are done."""

import hashlib
import json
import re
from pathlib import Path

import yaml

from mindsft.errors import MindsftError

HASH_BLOCK = 1 << 20  # bytes read at a time by file_sha256

_KINDS = {dict: "a mapping", list: "a list", type(None): "nothing"}


class _Loader(yaml.SafeLoader):
    """safe_load's loader, reading `1e-5` as a float as YAML 1.2 does (PyYAML's YAML
    1.1 rules need a dot, `1.e-5`, and would give the string '1e-5')."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def describe_value(value) -> str:
    """A value as a message shows it: YAML's words for booleans and null, the kind
    of a mapping or list, repr otherwise."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return _KINDS.get(type(value)) or repr(value)


def read_text(path, what: str = "file") -> str:
    """The UTF-8 text of `path`; a missing, unreadable or non-UTF-8 file is one line."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MindsftError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise MindsftError(f"{path}: is a directory, expected a {what}") from None
    except UnicodeDecodeError as exc:
        raise MindsftError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise MindsftError(f"{path}: cannot read ({exc.strerror})") from None


def _check_kind(data, expect, path: Path, fmt: str):
    if expect is not None and not isinstance(data, expect):
        got = _KINDS.get(type(data), type(data).__name__)
        raise MindsftError(
            f"{path}: expected {_KINDS[expect]} at the top level of the {fmt}, got {got}"
        )
    return data


def read_json(path, expect=dict):
    """The parsed JSON file at `path`; `expect` (dict, list or None) is the type the
    top level must have."""
    path = Path(path)
    text = read_text(path, "JSON file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MindsftError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    return _check_kind(data, expect, path, "JSON")


def read_yaml(path, expect=dict):
    """The parsed YAML file at `path` (safe loading: no code runs; `1e-5` is a float);
    `expect` as in read_json."""
    path = Path(path)
    text = read_text(path, "YAML file")
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise MindsftError(f"{path}: not valid YAML ({reason})") from None
    return _check_kind(data, expect, path, "YAML")


def file_sha256(path) -> str:
    """sha256 of one file, read in blocks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(HASH_BLOCK):
                digest.update(block)
    except OSError as exc:
        raise MindsftError(f"{path}: cannot read ({exc.strerror})") from None
    return digest.hexdigest()

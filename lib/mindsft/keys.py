"""Checking a YAML mapping against a table of the keys a reader takes: each key a
dotted path with the kind of value it holds. A value of another kind, or a key that
is a near miss of a known one, is one line naming the key path.

    KEYS = {"runner_config": MAPPING, "runner_config.epochs": POSITIVE_INT}
    check_kinds(tree, KEYS, "run.yaml")   # run.yaml: runner_config.epochs: expected
                                          # a positive integer, got 1.9
"""

import dataclasses
import difflib
from collections.abc import Callable

from mindsft.errors import MindsftError
from mindsft.files import describe_value

NEAR_MISS = 0.8  # difflib ratio from which an unknown key is taken for a typo of a known one


@dataclasses.dataclass(frozen=True)
class Kind:
    """What a value must be: one of `types` (a bool is never a number) passing `test`,
    or None where `optional`."""

    name: str
    """What the message says was expected: "a positive integer"."""
    types: tuple
    test: Callable = lambda value: True
    optional: bool = False

    def or_none(self) -> "Kind":
        return dataclasses.replace(self, name=f"{self.name} or null", optional=True)

    def fits(self, value) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) and bool not in self.types:
            return False
        return isinstance(value, self.types) and self.test(value)


INT = Kind("an integer", (int,))
POSITIVE_INT = Kind("a positive integer", (int,), lambda v: v > 0)
NON_NEGATIVE_INT = Kind("an integer >= 0", (int,), lambda v: v >= 0)
NUMBER = Kind("a number", (int, float))
POSITIVE_NUMBER = Kind("a positive number", (int, float), lambda v: v > 0)
FRACTION = Kind("a number in [0, 1]", (int, float), lambda v: 0 <= v <= 1)
BOOL = Kind("true or false", (bool,))
TEXT = Kind("a string", (str,))
MAPPING = Kind("a mapping", (dict,))
LIST_OF_MAPPINGS = Kind(
    "a list of mappings", (list,), lambda v: all(isinstance(x, dict) for x in v)
)


def lookup(tree: dict, path: str) -> tuple:
    """(True, value) at dotted `path` in nested mappings, else (False, None)."""
    node = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_kinds(tree: dict, kinds: dict, where: str) -> None:
    """Each key of `kinds` (dotted path -> Kind) present in `tree` holds a value of
    its kind; the first that does not is a MindsftError naming `where` and the path."""
    for path, kind in kinds.items():
        found, value = lookup(tree, path)
        if found and not kind.fits(value):
            got = describe_value(value)
            raise MindsftError(f"{where}: {path}: expected {kind.name}, got {got}")


def check_near_misses(tree: dict, known, where: str, prefix: str = "") -> None:
    """An unknown key of `tree` close to a known key beside it (`known`: dotted
    paths; a path's sections are known too) is a typo: a MindsftError saying which
    key was meant. Unknown keys that are no near miss are left to the caller."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if any(k == path or k.startswith(f"{path}.") for k in known):
            if isinstance(value, dict):
                check_near_misses(value, known, where, f"{path}.")
            continue
        siblings = {k[len(prefix) :].split(".")[0] for k in known if k.startswith(prefix)}
        close = [s for s in siblings if is_near_miss(str(key), s)]
        match = sorted(
            close, key=lambda s: (-difflib.SequenceMatcher(None, str(key), s).ratio(), s)
        )
        if match:
            raise MindsftError(f"{where}: {path}: unknown key; did you mean {prefix}{match[0]}?")


def is_near_miss(key: str, known: str) -> bool:
    """`key` looks like a typo of `known`: two adjacent letters swapped, or a difflib
    similarity of at least NEAR_MISS (a letter more, less or changed in a longer key)."""
    if key == known:
        return False
    swapped = len(key) == len(known) and [
        i for i, (a, b) in enumerate(zip(key, known, strict=True)) if a != b
    ]
    if swapped and len(swapped) == 2 and swapped[1] == swapped[0] + 1:
        i = swapped[0]
        return key[i] == known[i + 1] and key[i + 1] == known[i]
    return difflib.SequenceMatcher(None, key, known).ratio() >= NEAR_MISS

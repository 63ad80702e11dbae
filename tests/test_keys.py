"""The key table checks: kinds (a bool is no number) and near misses of known keys."""

import pytest
from mindsft.errors import MindsftError
from mindsft.keys import (
    BOOL,
    MAPPING,
    NUMBER,
    POSITIVE_INT,
    check_kinds,
    check_near_misses,
    is_near_miss,
)


@pytest.mark.parametrize(
    ("kind", "value", "fits"),
    [
        (NUMBER, 1, True),
        (NUMBER, 1e-5, True),
        (NUMBER, True, False),
        (NUMBER, "1e-5", False),
        (POSITIVE_INT, 0, False),
        (POSITIVE_INT, 2.0, False),
        (POSITIVE_INT.or_none(), None, True),
        (POSITIVE_INT, None, False),
        (BOOL, 1, False),
        (MAPPING, [], False),
    ],
)
def test_a_value_fits_its_kind_only(kind, value, fits):
    assert kind.fits(value) == fits


@pytest.mark.parametrize(
    ("key", "known", "near"),
    [
        ("epohcs", "epochs", True),
        ("mdoe", "mode", True),
        ("save_checkpoint_step", "save_checkpoint_steps", True),
        ("seq_len", "seq_length", True),
        ("epochs", "epochs", False),
        ("initial_epoch", "epochs", False),
        ("layernorm_compute_type", "compute_dtype", False),
        ("num_blocks", "num_heads", False),
    ],
)
def test_near_misses_are_swaps_or_close_spellings(key, known, near):
    assert is_near_miss(key, known) == near


def test_checks_name_the_key_path():
    kinds = {"a": MAPPING, "a.steps": POSITIVE_INT}
    message = r"^f\.yaml: a\.steps: expected a positive integer, got '3'$"
    with pytest.raises(MindsftError, match=message):
        check_kinds({"a": {"steps": "3"}}, kinds, "f.yaml")
    message = r"^f\.yaml: a\.stesp: unknown key; did you mean a\.steps\?$"
    with pytest.raises(MindsftError, match=message):
        check_near_misses({"a": {"stesp": 3, "zzz": 1}}, list(kinds), "f.yaml")
    check_near_misses({"a": {"zzz": 1}, "other": {"stesp": 1}}, list(kinds), "f.yaml")

"""Memory sizes as people and MindSpore write them."""

import pytest
from mindsft.errors import MindsftError
from mindsft.plan.units import format_size, parse_size

GIB = 1024**3


@pytest.mark.parametrize(
    "text, expected",
    [
        ("64GB", 64 * GIB),
        ("64GiB", 64 * GIB),
        ("64 gb", 64 * GIB),
        ("58GB", 58 * GIB),
        ("3.5GB", int(3.5 * GIB)),
        ("512MB", 512 * 1024**2),
        ("512MiB", 512 * 1024**2),
        ("4KB", 4096),
        ("1TB", 1024**4),
        ("1073741824", GIB),
        ("100B", 100),
        (1073741824, GIB),
    ],
)
def test_sizes_count_in_powers_of_1024_as_mindspore(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("64XB", "unknown unit 'XB'"),
        ("64 GBs", "unknown unit 'GBs'"),
        ("sixty", "is not a size"),
        ("", "is not a size"),
        ("0GB", "must be positive"),
        (-5, "must be positive"),
        (True, "expected a size"),
    ],
)
def test_a_bad_size_is_one_line_naming_the_setting(text, message):
    with pytest.raises(MindsftError) as exc:
        parse_size(text, "--device_memory")
    assert str(exc.value).startswith("--device_memory: ")
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_sizes_print_in_binary_units():
    assert format_size(64 * GIB) == "64.0 GiB"
    assert format_size(1536 * 1024) == "1.5 MiB"
    assert format_size(512) == "512 B"

"""Memory sizes as people write them (`64GB`, `58GiB`, `512MB`, `1073741824`) and
back. GB, MB, KB and TB count in powers of 1024, as MindSpore reads a YAML's
`context.max_device_memory: "58GB"`; GiB, MiB, KiB and TiB are the same sizes."""

import re

from mindsft.errors import MindsftError

_POWERS = {"": 0, "B": 0, "K": 1, "M": 2, "G": 3, "T": 4}
_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z]*)\s*$")
UNITS = "B, KB, MB, GB, TB (or KiB, MiB, GiB, TiB)"


def _power(unit: str):
    """The power of 1024 of a unit word, or None when it is not one."""
    u = unit.upper()
    if u.endswith("IB") and len(u) == 3:
        u = u[0]
    elif u.endswith("B") and len(u) == 2:
        u = u[0]
    return _POWERS.get(u)


def parse_size(value, what: str = "size") -> int:
    """Bytes in `value`: an int (bytes) or a string such as '64GB', '58GiB',
    '512MB', '3.5GB' or '1073741824'. Anything else is one line naming `what`."""
    if isinstance(value, bool):
        raise MindsftError(f"{what}: expected a size such as 64GB, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise MindsftError(f"{what}: a size must be positive, got {value}")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise MindsftError(f"{what}: {value!r} is not a size such as 64GB, 512MB or 1073741824")
    power = _power(m["unit"])
    if power is None:
        raise MindsftError(f"{what}: unknown unit {m['unit']!r} in {value!r} (use {UNITS})")
    size = int(float(m["number"]) * 1024**power)
    if size <= 0:
        raise MindsftError(f"{what}: a size must be positive, got {value!r}")
    return size


def format_size(n: float) -> str:
    """A byte count for people: '12.6 GiB', '340.0 MiB', '512 B'."""
    for unit, power in (("TiB", 4), ("GiB", 3), ("MiB", 2), ("KiB", 1)):
        if abs(n) >= 1024**power:
            return f"{n / 1024**power:.1f} {unit}"
    return f"{int(n)} B"

"""Progress bars of the long stages (tqdm, on stderr): shown when stderr is a
terminal; `MINDSFT_PROGRESS=1` (`mindsft --progress on`) shows them anywhere (a log
file, msrun's worker logs), `MINDSFT_PROGRESS=0` nowhere. The environment variable
reaches the processes a stage starts (msrun workers, preprocess workers)."""

import os
import sys

from tqdm import tqdm

ENV = "MINDSFT_PROGRESS"
CHOICES = {"auto": None, "on": "1", "off": "0"}  # --progress word -> ENV value


def set_progress(choice: str) -> None:
    """Apply `mindsft --progress`: auto leaves the environment as it is."""
    if CHOICES[choice] is not None:
        os.environ[ENV] = CHOICES[choice]


def progress_bar(total=None, *, desc: str, unit: str, show: bool = True, **kwargs) -> tqdm:
    """A tqdm bar on stderr, shown as the module docstring says; `show` False hides
    it whatever is asked (ranks other than 0). Counts, rate and, with a total, ETA."""
    wanted = os.environ.get(ENV, "")
    disable = True if not show or wanted == "0" else (False if wanted == "1" else None)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable, **kwargs)

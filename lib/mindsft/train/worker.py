"""What msrun starts on every worker and for its scheduler:

    python -m mindsft.train.worker SUBCOMMAND [ARGS...]

It runs `mindsft SUBCOMMAND ARGS...` as the command line would, after making the
process die with msrun and with the mindsft launcher (`signals.die_with_parent`),
and records for the launcher, in the folder named by MINDSFT_STATUS_DIR, that it
started (`PID.json`: role, rank, start time) and how it ended (`PID.exit`).
"""

import json
import os
import sys
import traceback
from pathlib import Path

from mindsft.train import signals
from mindsft.train.msrun import STATUS_ENV


def record(name: str, content: str) -> None:
    folder = os.environ.get(STATUS_ENV)
    if folder:
        path = Path(folder) / name
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(content)
        os.replace(tmp, path)


def main(argv: list) -> int:
    signals.die_with_parent()
    pid = os.getpid()
    info = {
        "role": os.environ.get("MS_ROLE", ""),
        "rank": os.environ.get("RANK_ID", ""),
        "start": signals.process_start(pid),
    }
    record(f"{pid}.json", json.dumps(info))
    rc = 1
    try:
        from mindsft.cli import main as cli_main

        rc = cli_main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        record(f"{pid}.exit", str(rc))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The `mindsft` command. Each subcommand lives beside the code it drives and
registers itself through a `register(subparsers)` function; this module only
collects them and turns `MindsftError` and operating-system errors into one line
and exit status 2."""

import argparse
import importlib
import importlib.metadata
import os
import sys

from mindsft.errors import MindsftError, os_error_line
from mindsft.progress import CHOICES, set_progress

# MindSpore's log level, set before MindSpore is imported unless the user set it:
# errors only (3), so its warnings do not bury mindsft's one-line messages
MINDSPORE_LOG_LEVEL = "3"

# subcommand modules, in the order `mindsft --help` lists them
SUBCOMMAND_MODULES = [
    "mindsft.convert.download",
    "mindsft.tiny",
    "mindsft.convert.cli",
    "mindsft.data.cli",
    "mindsft.train.run",
    "mindsft.train.cli",
    "mindsft.inference.cli",
    "mindsft.pet.peft_cli",
    "mindsft.plan.cli",
]


def str2bool(value: str) -> bool:
    """MindFormers' scripts take booleans as words: `--use_parallel True`."""
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "y", "on"):
        return True
    if v in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mindsft",
        description="MindFormers-style supervised fine-tuning of Llama models, "
        "one step per subcommand.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument(
        "--progress",
        choices=list(CHOICES),
        default="auto",
        help="progress bars of long stages on stderr: auto shows them on a terminal, on "
        "also in logs and msrun workers, off never (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def version() -> str:
    """The installed mindsft's version."""
    try:
        return importlib.metadata.version("mindsft")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        from mindsft import __version__

        return __version__


def main(argv=None) -> int:
    os.environ.setdefault("GLOG_v", MINDSPORE_LOG_LEVEL)
    args = build_parser().parse_args(argv)
    set_progress(args.progress)
    try:
        rc = args.func(args)
    except MindsftError as exc:
        message = str(exc)
    except OSError as exc:
        message = os_error_line(exc)
    else:
        return int(rc or 0)
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"mindsft {args.command}: error: {one_line}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

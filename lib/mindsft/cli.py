"""The `mindsft` command. Each subcommand lives beside the code it drives and
registers itself through a `register(subparsers)` function; this module only
collects them and turns `MindsftError` into one line and a non-zero exit."""

import argparse
import importlib
import importlib.metadata
import sys

from mindsft.errors import MindsftError
from mindsft.progress import CHOICES, set_progress

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
    args = build_parser().parse_args(argv)
    set_progress(args.progress)
    try:
        rc = args.func(args)
    except MindsftError as exc:
        print(f"mindsft {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())

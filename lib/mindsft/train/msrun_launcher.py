"""`mindsft msrun-launcher "CMD" [...]`: MindFormers' scripts/msrun_launcher.sh,
with its positional contract, exactly 1, 2, 6 or 9 arguments:

    "CMD"                                    8 workers on this node
    "CMD" WORKER_NUM
    "CMD" WORKER_NUM MASTER_PORT LOG_DIR JOIN CLUSTER_TIME_OUT
    "CMD" WORKER_NUM LOCAL_WORKER MASTER_ADDR MASTER_PORT NODE_RANK LOG_DIR JOIN CLUSTER_TIME_OUT

and its defaults (master 127.0.0.1:8118, node rank 0, LOG_DIR output/msrun_log
plus `_$MF_LOG_SUFFIX` when that is set, JOIN False, CLUSTER_TIME_OUT 7200).
CMD is a mindsft command line (`finetune ...`, `mindsft finetune ...`), and may
begin with `run_mindformer.py` (or `python run_mindformer.py`), read as `run`, so
the guide's quoted string pastes verbatim. Worker logs go to
LOG_DIR/worker_*.log.

Unlike the script, the launcher always waits for the run (msrun runs with
--join True): it has to, to take the workers down with it and to print a failed
worker's error or last traceback lines. JOIN True additionally copies the first
worker's log to the terminal as it is written.
"""

import contextlib
import io
import os
import shlex
import sys
from pathlib import Path

from mindsft.cli import str2bool
from mindsft.errors import MindsftError
from mindsft.train.lock import RunLock
from mindsft.train.msrun import Cluster, run_msrun

FORMS = (
    '"CMD"',
    '"CMD" WORKER_NUM',
    '"CMD" WORKER_NUM MASTER_PORT LOG_DIR JOIN CLUSTER_TIME_OUT',
    '"CMD" WORKER_NUM LOCAL_WORKER MASTER_ADDR MASTER_PORT NODE_RANK LOG_DIR JOIN CLUSTER_TIME_OUT',
)
ALIASES = {"run_mindformer.py": "run"}
DEFAULTS = {  # the script's
    "WORKER_NUM": "8",
    "LOCAL_WORKER": "8",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "8118",
    "NODE_RANK": "0",
    "LOG_DIR": "output/msrun_log",
    "JOIN": "False",
    "CLUSTER_TIME_OUT": "7200",
}


def _number(name: str, value: str) -> int:
    if not value.isdigit():
        raise MindsftError(f"{name.lower()}={value} is not a number")
    return int(value)


def parse(params: list, say) -> tuple:
    """(CMD, Cluster) from the script's positional arguments."""
    if len(params) not in (1, 2, 6, 9):
        raise MindsftError(
            f"msrun-launcher takes 1, 2, 6 or 9 arguments, got {len(params)}: " + " | ".join(FORMS)
        )
    values = dict(DEFAULTS)
    names = {
        1: [],
        2: ["WORKER_NUM"],
        6: ["WORKER_NUM", "MASTER_PORT", "LOG_DIR", "JOIN", "CLUSTER_TIME_OUT"],
        9: FORMS[3].split()[1:],
    }[len(params)]
    values.update(zip(names, params[1:], strict=True))
    if len(params) == 1:
        say("No parameter is entered. Notice that the program will run on default 8 cards.")
    if len(params) != 9:
        values["LOCAL_WORKER"] = values["WORKER_NUM"]
    suffix = os.environ.get("MF_LOG_SUFFIX", "")
    cluster = Cluster(
        worker_num=_number("WORKER_NUM", values["WORKER_NUM"]),
        local_worker_num=_number("LOCAL_WORKER", values["LOCAL_WORKER"]),
        log_dir=Path(values["LOG_DIR"] + (f"_{suffix}" if suffix else "")),
        master_addr=values["MASTER_ADDR"],
        master_port=_number("MASTER_PORT", values["MASTER_PORT"]),
        node_rank=_number("NODE_RANK", values["NODE_RANK"]),
        cluster_time_out=_number("CLUSTER_TIME_OUT", values["CLUSTER_TIME_OUT"]),
        echo=str2bool(values["JOIN"]),
    )
    if len(params) == 9:
        say(
            "worker_num is equal to local_worker, Notice that task will run on single node."
            if cluster.single_node
            else f"worker_num={cluster.worker_num}, local_worker={cluster.local_worker_num}, "
            "Please run this script on other nodes with different node_rank."
        )
    return params[0], cluster


def child_argv(cmd: str) -> list:
    """The mindsft arguments CMD stands for."""
    argv = shlex.split(cmd)
    if argv and Path(argv[0]).name in ("python", "python3"):
        argv = argv[1:]
    if argv and argv[0] == "mindsft":
        argv = argv[1:]
    if not argv:
        raise MindsftError("msrun-launcher: CMD is empty")
    argv[0] = ALIASES.get(Path(argv[0]).name, argv[0])
    return argv


def parse_cmd(argv: list):
    """CMD parsed by mindsft's own parser, so that a bad one fails here, before
    msrun, in one line."""
    from mindsft.cli import build_parser

    message = io.StringIO()
    try:
        with contextlib.redirect_stderr(message):
            return build_parser().parse_args(argv)
    except SystemExit:
        lines = message.getvalue().strip().splitlines() or ["cannot parse it"]
        raise MindsftError(f"CMD {shlex.join(argv)!r}: {lines[-1]}") from None


def run_launcher(args) -> int:
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    cmd, cluster = parse(args.params, say)
    argv = child_argv(cmd)
    parsed = parse_cmd(argv)
    say(f"Running Command: msrun ... mindsft {shlex.join(argv)}")
    say(f"worker logs: {cluster.log_dir}/worker_*.log")
    output_dir = getattr(parsed, "output_dir", None)
    if output_dir is None:
        return run_msrun(argv, cluster, say)
    with RunLock(output_dir, cluster.node_rank, say):
        return run_msrun(argv, cluster, say)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "msrun-launcher",
        help="run a mindsft command on N workers under msrun (scripts/msrun_launcher.sh)",
        description="Run a mindsft command line (CMD; run_mindformer.py reads as run) on "
        "WORKER_NUM workers under msrun, with scripts/msrun_launcher.sh's positional "
        "arguments and defaults: 8 workers, master 127.0.0.1:8118, node rank 0, logs in "
        "output/msrun_log, JOIN False, cluster time-out 7200 s. It waits for the run and "
        "prints a failed worker's own error.",
    )
    p.add_argument("params", nargs="+", metavar="ARG", help=" | ".join(FORMS))
    p.set_defaults(func=run_launcher)

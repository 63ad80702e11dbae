"""What a run reports per step: the loss log (loss.jsonl) and the progress bar."""

import json
from contextlib import contextmanager
from pathlib import Path

from mindsft.atomic import cannot_write
from mindsft.progress import progress_bar

LOSS_LOG = "loss.jsonl"


def append_record(log, record: dict) -> None:
    """Write one JSON line to the loss log (a binary, unbuffered file, so that a full
    disk fails here, once, and the error names the log)."""
    try:
        log.write((json.dumps(record) + "\n").encode())
    except OSError as exc:
        raise cannot_write(log.name, exc) from None


@contextmanager
def loss_log(output_dir: Path, rank: int, done: int):
    """loss.jsonl open for appending records (rank 0 only; None elsewhere), keeping
    the records of the `done` steps already done."""
    if rank != 0:
        yield None
        return
    path = output_dir / LOSS_LOG
    output_dir.mkdir(parents=True, exist_ok=True)
    kept = []
    if done and path.exists():
        kept = [
            line
            for line in path.read_text().splitlines()
            if line and json.loads(line)["step"] <= done
        ]
    with path.open("wb", buffering=0) as log:  # unbuffered: a failed write fails there
        log.write("".join(line + "\n" for line in kept).encode())
        yield log


def step_progress(total: int, done: int, run_mode: str, rank: int):
    """Steps done of the run, with the last loss, learning rate, tokens/s and ETA
    (shown on rank 0 only)."""
    return progress_bar(
        total, initial=done, desc=run_mode or "finetune", unit="step", show=rank == 0
    )


def report_step(record: dict, log, bar, tensorboard, after_step=None) -> None:
    """Hand one step's record on: the loss log, TensorBoard, `after_step`, the
    progress bar."""
    if log is not None:
        append_record(log, record)
    tensorboard.step(record)
    if after_step is not None:
        after_step(record)
    bar.set_postfix(
        loss=f"{record['loss']:.4f}",
        lr=f"{record['lr']:.2e}",
        tokens_per_s=f"{record['tokens_per_s']:.0f}",
    )
    bar.update(1)

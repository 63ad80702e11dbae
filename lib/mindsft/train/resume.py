"""Resuming a run from one of its checkpoints: the checks that the checkpoint
belongs to this run (its signature, mindsft.train.signature, and its position),
then its trained weights and optimizer state loaded. Which checkpoint to take is
the checkpoint owner's (RunCheckpoints.newest_usable)."""

from pathlib import Path

from mindsft.errors import MindsftError
from mindsft.models.loading import read_checkpoint
from mindsft.train import checkpoint
from mindsft.train.signature import differences


def load_resume_point(
    path: Path, parameters: list, signature: dict, schedule, steps_per_epoch: int, total: int
) -> tuple:
    """Load `path` into `parameters` (the trained weights and optimizer state) after
    checking it against this run's `signature` and its length (`steps_per_epoch`,
    `total` optimizer steps); return its position, (0-based epoch, steps done in it,
    global steps done)."""
    stored = read_checkpoint(path)
    epoch, step_in_epoch, global_step = checkpoint.read_position(stored, path)
    check_signature(stored, path, signature, schedule, global_step)
    if global_step != epoch * steps_per_epoch + step_in_epoch:
        raise MindsftError(
            f"{path}: position (epoch {epoch}, step {step_in_epoch}) does not fit this run's "
            f"{steps_per_epoch} steps per epoch"
        )
    if global_step > total:
        raise MindsftError(f"{path}: holds {global_step} steps, more than this run's {total}")
    load_state(stored, path, parameters)
    return epoch, step_in_epoch, global_step


def check_signature(stored: dict, path: Path, signature: dict, schedule, done: int) -> None:
    """Refuse a checkpoint without a run signature, or whose signature differs from
    this run's in a way resuming after `done` steps cannot handle."""
    saved = checkpoint.read_signature(stored)
    if saved is None:
        raise MindsftError(
            f"{path}: carries no run signature (not written by this mindsft), so it "
            "cannot be checked against this run: resume refused"
        )
    found = differences(saved, signature, schedule, done)
    if found:
        raise MindsftError(
            f"{path}: written by a run with other settings, resume refused: " + "; ".join(found)
        )


def load_state(stored: dict, path: Path, parameters: list) -> None:
    """Set `parameters` (trained weights, optimizer state) from a loaded checkpoint."""
    wanted = {p.name: p for p in parameters}
    missing = [n for n in wanted if n not in stored]
    if missing:
        raise MindsftError(
            f"{path}: missing {len(missing)} parameter(s) to resume: {', '.join(missing[:6])}"
        )
    for name, param in wanted.items():
        param.set_data(stored[name].astype(param.dtype))

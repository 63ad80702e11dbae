"""Training checkpoints laid out as MindFormers lays them out:

    output_dir/checkpoint/rank_{i}/{prefix}_rank_{i}-{epoch}_{step}.ckpt

`epoch` is 1-based, `step` counts optimizer steps inside that epoch (MindSpore's
ModelCheckpoint naming). Each file holds the trained parameters, the optimizer
state (`adam_m.*`, `adam_v.*`, `global_step`) and the data position
(`epoch_num`, `step_num`), is written under a temporary name and renamed, and
only the newest `keep_checkpoint_max` files of a rank are kept.
"""

import os
import re
from pathlib import Path

import mindspore as ms
import numpy as np

from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError

_NAME = re.compile(r"^(?P<prefix>.+)_rank_(?P<rank>\d+)-(?P<epoch>\d+)_(?P<step>\d+)\.ckpt$")
POSITION = ("epoch_num", "step_num", "global_step")


def rank_dir(output_dir, rank: int) -> Path:
    return Path(output_dir) / "checkpoint" / f"rank_{rank}"


def checkpoint_path(output_dir, rank: int, prefix: str, epoch: int, step: int) -> Path:
    return rank_dir(output_dir, rank) / f"{prefix}_rank_{rank}-{epoch}_{step}.ckpt"


def list_checkpoints(output_dir, rank: int) -> list:
    """This rank's complete checkpoints, oldest first (ordered by epoch, then step)."""
    found = []
    folder = rank_dir(output_dir, rank)
    for path in folder.glob("*.ckpt") if folder.is_dir() else []:
        m = _NAME.match(path.name)
        if m and int(m["rank"]) == rank:
            found.append((int(m["epoch"]), int(m["step"]), path))
    return [p for _, _, p in sorted(found)]


def save(path: Path, tensors: dict, keep_max: int) -> Path:
    """Write {name: Tensor} to `path` atomically, then prune to `keep_max` files."""
    path = Path(path)
    with atomic_output(path) as tmp:
        records = [{"name": n, "data": t} for n, t in tensors.items()]
        ms.save_checkpoint(records, str(tmp) + ".ckpt")  # MindSpore appends .ckpt otherwise
        os.replace(str(tmp) + ".ckpt", tmp)
    m = _NAME.match(path.name)
    if m and keep_max > 0:
        existing = list_checkpoints(path.parents[2], int(m["rank"]))
        for old in existing[:-keep_max]:
            old.unlink(missing_ok=True)
    return path


def position_tensors(epoch: int, step_in_epoch: int) -> dict:
    """Scalars saving the data position (0-based epoch, optimizer steps done in it);
    the optimizer's own `global_step` completes it."""
    return {"epoch_num": ms.Tensor(np.int32(epoch)), "step_num": ms.Tensor(np.int32(step_in_epoch))}


def read_position(stored: dict, path) -> tuple:
    """(epoch, step_in_epoch, global_step) from a loaded training checkpoint."""
    missing = [k for k in POSITION if k not in stored]
    if missing:
        raise MindsftError(f"{path}: not a mindsft training checkpoint (no {', '.join(missing)})")
    return tuple(int(stored[k].asnumpy()) for k in POSITION)

"""Training checkpoints laid out as MindFormers lays them out:

    output_dir/checkpoint/rank_{i}/{prefix}_rank_{i}-{epoch}_{step}.ckpt

`epoch` is 1-based, `step` counts optimizer steps inside that epoch (MindSpore's
ModelCheckpoint naming). Each file holds the trained parameters, the optimizer
state (`adam_m.*`, `adam_v.*`, `global_step`) and the data position
(`epoch_num`, `step_num`), is written under a temporary name and renamed, and
only the newest `keep_checkpoint_max` files of a rank are kept.

`RunCheckpoints` is the one owner of this layout: every path is built, and every
file name parsed, here.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError

_NAME = re.compile(r"^(?P<prefix>.+)_rank_(?P<rank>\d+)-(?P<epoch>\d+)_(?P<step>\d+)\.ckpt$")
POSITION = ("epoch_num", "step_num", "global_step")


@dataclass(frozen=True)
class CheckpointFile:
    """One rank's checkpoint file, its name parsed."""

    path: Path
    prefix: str
    rank: int
    epoch: int
    """1-based epoch."""
    step: int
    """Optimizer steps done inside that epoch."""

    @property
    def position(self) -> tuple:
        """(epoch, step): the same on every rank of one save."""
        return self.epoch, self.step

    @classmethod
    def parse(cls, path) -> "CheckpointFile | None":
        """The record of a file named `{prefix}_rank_{i}-{epoch}_{step}.ckpt`, else None."""
        path = Path(path)
        m = _NAME.match(path.name)
        if m is None:
            return None
        return cls(path, m["prefix"], int(m["rank"]), int(m["epoch"]), int(m["step"]))


class RunCheckpoints:
    """A run's checkpoint folder, `output_dir/checkpoint/rank_{i}/`. `prefix` names
    the files this run writes; listing reads every prefix."""

    def __init__(self, output_dir, prefix: str | None = None):
        self.output_dir = Path(output_dir)
        self.root = self.output_dir / "checkpoint"
        self.prefix = prefix

    @classmethod
    def holding(cls, path) -> tuple:
        """(RunCheckpoints, CheckpointFile) of a file that sits in this layout, with
        the file's own prefix; (None, None) for a file elsewhere or named otherwise."""
        found = CheckpointFile.parse(path)
        if found is None:
            return None, None
        folder = found.path.parent
        if folder.name != f"rank_{found.rank}" or folder.parent.name != "checkpoint":
            return None, None
        return cls(folder.parent.parent, found.prefix), found

    def rank_dir(self, rank: int) -> Path:
        return self.root / f"rank_{rank}"

    def file(self, rank: int, epoch: int, step: int) -> Path:
        """The path of `rank`'s checkpoint after `step` steps of 1-based `epoch`."""
        if self.prefix is None:
            raise ValueError(f"{self.root}: RunCheckpoints needs a prefix to name files")
        return self.rank_dir(rank) / f"{self.prefix}_rank_{rank}-{epoch}_{step}.ckpt"

    def ranks(self) -> list:
        """The ranks that have a folder, ascending."""
        if not self.root.is_dir():
            return []
        names = (p.name for p in self.root.iterdir() if p.is_dir())
        return sorted(int(n[5:]) for n in names if re.fullmatch(r"rank_\d+", n))

    def files(self, rank: int) -> list:
        """`rank`'s checkpoint files as CheckpointFile records, oldest first (by
        epoch, then step)."""
        folder = self.rank_dir(rank)
        found = [CheckpointFile.parse(p) for p in folder.glob("*.ckpt")] if folder.is_dir() else []
        mine = [f for f in found if f is not None and f.rank == rank]
        return sorted(mine, key=lambda f: (f.epoch, f.step, f.path))

    def newest(self, rank: int) -> "CheckpointFile | None":
        found = self.files(rank)
        return found[-1] if found else None

    def common_steps(self, ranks) -> set:
        """The (epoch, step) positions every one of `ranks` that has a folder holds."""
        held = [{f.position for f in self.files(r)} for r in ranks if self.rank_dir(r).is_dir()]
        return set.intersection(*held) if held else set()

    def newest_common(self, rank: int, ranks) -> "CheckpointFile | None":
        """`rank`'s newest checkpoint whose step every one of `ranks` (that has a
        folder) holds too: the step a data-parallel run can resume from."""
        common = self.common_steps({rank, *ranks})
        usable = [f for f in self.files(rank) if f.position in common]
        return usable[-1] if usable else None

    def prune(self, rank: int, keep: int) -> None:
        """Delete all but `rank`'s newest `keep` files (keep <= 0: keep all)."""
        if keep > 0:
            for old in self.files(rank)[:-keep]:
                old.path.unlink(missing_ok=True)

    def save(self, rank: int, epoch: int, step: int, tensors: dict, keep_max: int) -> Path:
        """Write {name: Tensor} as `rank`'s checkpoint of (epoch, step) atomically,
        then prune the rank to `keep_max` files."""
        import mindspore as ms  # here: finding checkpoints needs no MindSpore

        path = self.file(rank, epoch, step)
        with atomic_output(path) as tmp:
            records = [{"name": n, "data": t} for n, t in tensors.items()]
            ms.save_checkpoint(records, str(tmp) + ".ckpt")  # MindSpore appends .ckpt otherwise
            os.replace(str(tmp) + ".ckpt", tmp)
        self.prune(rank, keep_max)
        return path


def position_tensors(epoch: int, step_in_epoch: int) -> dict:
    """Scalars saving the data position (0-based epoch, optimizer steps done in it);
    the optimizer's own `global_step` completes it."""
    import mindspore as ms

    return {"epoch_num": ms.Tensor(np.int32(epoch)), "step_num": ms.Tensor(np.int32(step_in_epoch))}


def read_position(stored: dict, path) -> tuple:
    """(epoch, step_in_epoch, global_step) from a loaded training checkpoint."""
    missing = [k for k in POSITION if k not in stored]
    if missing:
        raise MindsftError(f"{path}: not a mindsft training checkpoint (no {', '.join(missing)})")
    return tuple(int(stored[k].asnumpy()) for k in POSITION)

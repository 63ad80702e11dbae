"""Training checkpoints laid out as MindFormers lays them out:

    output_dir/checkpoint/rank_{i}/{prefix}_rank_{i}-{epoch}_{step}.ckpt

`epoch` is 1-based, `step` counts optimizer steps inside that epoch (MindSpore's
ModelCheckpoint naming). Each file holds the trained parameters, the optimizer
state (`adam_m.*`, `adam_v.*`, `global_step`), the data position (`epoch_num`,
`step_num`) and the run's signature (`mindsft.signature`, JSON as uint8), and
ends in MindSpore's checksum trailer (`crc_check`: b"crc_num" + the CRC-32 of
everything before it, 10 bytes big-endian), so `ms.load_checkpoint(...,
crc_check=True)` verifies it too. A file is written under a temporary name,
checksummed, flushed to disk and renamed, so a checkpoint without its trailer
is one that was cut short or written by something else. Only the newest
`keep_checkpoint_max` files of a rank are kept.

`RunCheckpoints` is the one owner of this layout: every path is built, and every
file name parsed, here.
"""

import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindsft.atomic import atomic_output, cannot_write
from mindsft.convert.ckpt import CkptWriter, iter_ckpt, scan_ckpt
from mindsft.errors import MindsftError

_NAME = re.compile(r"^(?P<prefix>.+)_rank_(?P<rank>\d+)-(?P<epoch>\d+)_(?P<step>\d+)\.ckpt$")
_PARTIAL = re.compile(r"^\..+\.ckpt\.tmp-[0-9a-f]{8}")  # atomic_output's temporary names
POSITION = ("epoch_num", "step_num", "global_step")
SIGNATURE = "mindsft.signature"
CRC_TAG = b"crc_num"  # MindSpore's crc_check trailer: tag + CRC-32 in 10 big-endian bytes
CRC_LEN = len(CRC_TAG) + 10
_BLOCK = 1 << 20
# why verify() refuses a file ("unreadable" is followed by the OS's reason)
NO_TRAILER = "no checksum trailer (cut short or not written by mindsft)"
MISMATCH = "checksum mismatch (the file changed after it was written)"
UNREADABLE = "unreadable"
CORRUPT = "cut short or corrupt"
VERIFY_REASONS = (NO_TRAILER, MISMATCH, UNREADABLE, CORRUPT)
UNUSABLE = ("missing on this rank", *VERIFY_REASONS)  # as codes 1, 2, ... ranks exchange


class NonFiniteTensor(MindsftError):
    """A save found a tensor holding NaN or infinity (`name`) and wrote nothing."""

    def __init__(self, path, name: str):
        super().__init__(f"{path}: {name} holds NaN or infinite values; not written")
        self.name = name


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

    def __init__(self, output_dir, prefix: str | None = None, *, root=None):
        self.output_dir = Path(output_dir)
        self.root = Path(root) if root is not None else self.output_dir / "checkpoint"
        self.prefix = prefix

    @classmethod
    def at(cls, root) -> "RunCheckpoints":
        """The folder `root` itself holding `rank_{i}/` (MindFormers' `output/checkpoint/`)."""
        root = Path(root)
        return cls(root.parent, root=root)

    @classmethod
    def holding(cls, path) -> tuple:
        """(RunCheckpoints, CheckpointFile) of a file that sits in this layout, with
        the file's own prefix; (None, None) for a file elsewhere or named otherwise."""
        found = CheckpointFile.parse(path)
        if found is None:
            return None, None
        folder = found.path.parent
        if folder.name != f"rank_{found.rank}":
            return None, None
        return cls(folder.parent.parent, found.prefix, root=folder.parent), found

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

    def at_position(self, rank: int, position: tuple) -> "CheckpointFile | None":
        """`rank`'s file of the save at (epoch, step), whatever its prefix."""
        found = [f for f in self.files(rank) if f.position == position]
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

    def newest_usable(self, rank: int, world: int, all_sum, say) -> "CheckpointFile | None":
        """`rank`'s file of the newest save that all `world` ranks hold and verify,
        the ranks agreeing through `all_sum` (launch.all_sum: the element-wise sum
        of a vector over every rank); rank 0 `say`s, for each newer save skipped,
        which rank's file failed and why. None: no save is usable."""
        positions = {f.position for r in range(world) for f in self.files(r)}
        for position in sorted(positions, reverse=True):
            mine = self.at_position(rank, position)
            reason = UNUSABLE[0] if mine is None else verify(mine.path)
            codes = np.zeros(world, np.float32)
            if reason is not None:
                codes[rank] = 1 + [reason.startswith(u) for u in UNUSABLE].index(True)
            bad = {r: UNUSABLE[int(c) - 1] for r, c in enumerate(all_sum(codes, world)) if c}
            if not bad:
                return mine
            if rank == 0:
                why = "; ".join(f"rank_{r}: {text}" for r, text in bad.items())
                say(f"skipping the save of epoch {position[0]} step {position[1]}: {why}")
        return None

    def prune(self, rank: int, keep: int) -> None:
        """Delete all but `rank`'s newest `keep` files (keep <= 0: keep all)."""
        if keep > 0:
            for old in self.files(rank)[:-keep]:
                old.path.unlink(missing_ok=True)

    def remove_partial(self, rank: int) -> list:
        """Delete what interrupted writes left in `rank`'s folder (temporary files of
        a save that was killed or failed); return their paths. Call it only while
        holding the run's lock: another run's save in progress looks the same."""
        folder = self.rank_dir(rank)
        gone = [p for p in folder.iterdir() if _PARTIAL.match(p.name)] if folder.is_dir() else []
        for path in gone:
            path.unlink(missing_ok=True)
        return gone

    def save(self, rank: int, epoch: int, step: int, tensors: dict, keep_max: int) -> Path:
        """Write {name: Tensor or array} as `rank`'s checkpoint of (epoch, step) with
        its checksum trailer, atomically, then prune the rank to `keep_max` files.
        A failed write leaves nothing behind and is one line naming the file; a
        float tensor holding NaN or infinity raises NonFiniteTensor."""
        path = self.file(rank, epoch, step)
        try:
            with atomic_output(path) as tmp:
                with CkptWriter(tmp) as out:
                    for name in sorted(tensors, key=lambda n: n != SIGNATURE):  # signature first
                        tensor = tensors[name]
                        array = tensor.asnumpy() if hasattr(tensor, "asnumpy") else tensor
                        if array.dtype.kind == "f" and not np.isfinite(array).all():
                            raise NonFiniteTensor(path, name)
                        out.write(name, array)
                append_checksum(tmp)
        except OSError as exc:
            self.remove_partial(rank)
            raise cannot_write(path, exc) from None
        except NonFiniteTensor:
            raise
        except MindsftError as exc:  # the writer's own one line names its temporary file
            self.remove_partial(rank)
            where, _, why = str(exc).partition(": ")
            raise MindsftError(f"{path}: {why}" if ".tmp-" in where else str(exc)) from None
        self.prune(rank, keep_max)
        return path


def _crc32(fh, nbytes: int) -> int:
    crc, left = 0, nbytes
    while left > 0:
        block = fh.read(min(_BLOCK, left))
        if not block:
            break
        crc = zlib.crc32(block, crc)
        left -= len(block)
    return crc


def append_checksum(path) -> None:
    """Append MindSpore's crc_check trailer to the checkpoint at `path` and flush
    the file to disk."""
    with open(path, "r+b") as fh:
        crc = _crc32(fh, os.fstat(fh.fileno()).st_size)
        fh.seek(0, os.SEEK_END)
        fh.write(CRC_TAG + crc.to_bytes(10, "big"))
        fh.flush()
        os.fsync(fh.fileno())


def verify(path, *, required: bool = True) -> str | None:
    """None when the checkpoint at `path` ends in a checksum trailer that matches its
    content; else why not. Without `required`, a file with no trailer passes when it
    reads whole and is not mindsft's: MindFormers adds no trailer, while a mindsft
    checkpoint (its first tensor is the run signature) without one was cut short."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(size - CRC_LEN, 0))
            trailer = fh.read(CRC_LEN)
            if not trailer.startswith(CRC_TAG):
                return NO_TRAILER if required else _without_trailer(path)
            fh.seek(0)
            if _crc32(fh, size - CRC_LEN) != int.from_bytes(trailer[len(CRC_TAG) :], "big"):
                return MISMATCH
    except OSError as exc:
        return f"{UNREADABLE} ({exc.strerror or exc})"
    return None


def agreed_tensors(reference, others, keep=lambda name: True):
    """Yield (name, array) for each tensor of the checkpoint `reference` that `keep`
    accepts, after checking that every file in `others` holds the same bytes under
    that name; files are read one tensor at a time. The first difference raises
    MindsftError naming the file and the tensor."""
    entries = [(other, {e.name: e for e in scan_ckpt(other)}) for other in others]
    for name, array in iter_ckpt(reference):
        if not keep(name):
            continue
        for other, held in entries:
            if name not in held or held[name].read().tobytes() != array.tobytes():
                raise MindsftError(
                    f"{other}: data-parallel replicas differ from rank 0 ({Path(reference).name}) "
                    f"in {name}"
                )
        yield name, array


def _without_trailer(path) -> str | None:
    try:
        entries = scan_ckpt(path)
    except MindsftError as exc:
        return f"{CORRUPT} ({str(exc).removeprefix(f'{path}: ')})"
    return NO_TRAILER if entries and entries[0].name == SIGNATURE else None


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
    return tuple(int(stored[k].asnumpy().reshape(-1)[0]) for k in POSITION)


def signature_tensor(signature: dict) -> np.ndarray:
    """The run's signature as the uint8 tensor a checkpoint stores under SIGNATURE."""
    return np.frombuffer(json.dumps(signature, sort_keys=True).encode(), np.uint8).copy()


def read_signature(stored: dict) -> dict | None:
    """The signature a loaded checkpoint carries; None when it has none."""
    if SIGNATURE not in stored:
        return None
    value = stored[SIGNATURE]
    raw = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
    return json.loads(raw.astype(np.uint8).tobytes().decode())

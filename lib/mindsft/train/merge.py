"""`mindsft merge-lora`: base checkpoint + LoRA training checkpoint -> one merged
checkpoint with the base's names and dtypes (what MindFormers'
transform_ckpt_lora.py writes). For a full-parameter run it takes rank 0's
weights, after checking the other ranks hold the same ones."""

from pathlib import Path

from mindsft.atomic import check_writable
from mindsft.convert.ckpt import CkptWriter, iter_ckpt, scan_ckpt
from mindsft.convert.names import MODEL_PREFIXES
from mindsft.errors import MindsftError
from mindsft.pet.config import is_lora_param
from mindsft.pet.merge import lora_pairs, merge_tensors
from mindsft.train.checkpoint import RunCheckpoints


def resolve_checkpoint(path, rank: int = 0) -> Path:
    """A checkpoint file, or the newest of `rank` under a run's train dir."""
    path = Path(path)
    if path.is_file():
        return path
    for root in (path, path / "train"):
        found = RunCheckpoints(root).newest(rank)
        if found is not None:
            return found.path
    raise MindsftError(f"{path}: no checkpoint file, and no checkpoint/rank_{rank}/*.ckpt under it")


def merge_lora_checkpoint(cfg, base_checkpoint, lora_checkpoint, output_path) -> Path:
    """Write base + (alpha/rank) B @ A in each base tensor's dtype, streamed: the
    LoRA matrices are held (they are small), the base one tensor at a time."""
    check_writable(output_path, "file")
    lora_path = resolve_checkpoint(lora_checkpoint)
    if cfg.lora is None:
        return take_rank0(lora_path, output_path)
    lora = {
        name: array
        for name, array in iter_ckpt(lora_path)
        if name.startswith(MODEL_PREFIXES) and is_lora_param(name)
    }
    pairs = lora_pairs(lora)
    if not pairs:
        raise MindsftError(f"{lora_path}: holds no LoRA matrices (mindpet_delta_lora_a/b)")
    absent = sorted(set(pairs) - {entry.name for entry in scan_ckpt(base_checkpoint)})
    if absent:
        raise MindsftError(
            f"{base_checkpoint}: lacks the base weights of LoRA pairs: {', '.join(absent[:6])}"
        )
    ranks = {lora[a].shape[0] for a, _ in pairs.values()}
    if ranks != {cfg.lora.lora_rank}:
        raise MindsftError(
            f"{lora_path}: LoRA rank {sorted(ranks)} differs from the config's lora_rank "
            f"{cfg.lora.lora_rank} ({cfg.source})"
        )
    base = (item for item in iter_ckpt(base_checkpoint) if not is_lora_param(item[0]))
    with CkptWriter(output_path) as out:
        for name, weight in merge_tensors(base, lora, cfg.lora.scaling, pairs):
            out.write(name, weight)
    return Path(output_path)


def replicas(path: Path) -> list:
    """The other ranks' files of the same save as `path`, where it sits in a run's
    checkpoint folder and they exist."""
    ckpts, this = RunCheckpoints.holding(path)
    if ckpts is None:
        return []
    others = (ckpts.file(r, this.epoch, this.step) for r in ckpts.ranks() if r != this.rank)
    return [other for other in others if other.is_file()]


def take_rank0(rank0_path: Path, output_path) -> Path:
    """A full-parameter run's weights: rank 0's, checked equal on every other rank,
    streamed one tensor at a time."""
    others = [(other, {e.name: e for e in scan_ckpt(other)}) for other in replicas(rank0_path)]
    with CkptWriter(output_path) as out:
        for name, weight in iter_ckpt(rank0_path):
            if not name.startswith(MODEL_PREFIXES):
                continue
            for other, entries in others:
                if name not in entries or entries[name].read().tobytes() != weight.tobytes():
                    raise MindsftError(
                        f"{other}: data-parallel replicas differ from rank 0 in {name}"
                    )
            out.write(name, weight)
    return Path(output_path)

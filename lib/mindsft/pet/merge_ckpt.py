"""`mindsft merge-lora`: base checkpoint + LoRA training checkpoint -> one merged
checkpoint with the base's names and dtypes (what MindFormers'
transform_ckpt_lora.py writes). For a full-parameter run it takes rank 0's
weights, after checking the other ranks hold the same ones."""

from pathlib import Path

import mindspore as ms
import numpy as np

from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError
from mindsft.models.loading import MODEL_PREFIXES, read_checkpoint
from mindsft.pet.config import is_lora_param
from mindsft.pet.merge import lora_pairs, merge_weight
from mindsft.train.checkpoint import list_checkpoints


def resolve_checkpoint(path, rank: int = 0) -> Path:
    """A checkpoint file, or the newest of `rank` under a run's train dir."""
    path = Path(path)
    if path.is_file():
        return path
    for root in (path, path / "train"):
        found = list_checkpoints(root, rank)
        if found:
            return found[-1]
    raise MindsftError(f"{path}: no checkpoint file, and no checkpoint/rank_{rank}/*.ckpt under it")


def _to_numpy(t) -> np.ndarray:
    """float32 numpy for bfloat16 (numpy has none), native dtype otherwise."""
    return (t.astype(ms.float32) if t.dtype == ms.bfloat16 else t).asnumpy()


def _save(path, tensors: dict) -> None:
    with atomic_output(path) as tmp:
        ms.save_checkpoint([{"name": n, "data": t} for n, t in tensors.items()], str(tmp) + ".ckpt")
        Path(str(tmp) + ".ckpt").replace(tmp)


def merge_lora_checkpoint(cfg, base_checkpoint, lora_checkpoint, output_path) -> Path:
    """Write base + (alpha/rank) B @ A, one tensor at a time, in each base tensor's dtype."""
    lora_path = resolve_checkpoint(lora_checkpoint)
    if cfg.lora is None:
        return take_rank0(lora_checkpoint, lora_path, output_path)
    base = read_checkpoint(base_checkpoint)
    lora = {n: p for n, p in read_checkpoint(lora_path).items() if n.startswith(MODEL_PREFIXES)}
    pairs = lora_pairs(lora)
    if not pairs:
        raise MindsftError(f"{lora_path}: holds no LoRA matrices (mindpet_delta_lora_a/b)")
    absent = sorted(set(pairs) - set(base))
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
    merged = {}
    for name, param in base.items():
        if name in pairs:
            a, b = (_to_numpy(lora[k]) for k in pairs[name])
            w = merge_weight(_to_numpy(param), a, b, cfg.lora.scaling)
            merged[name] = ms.Tensor(w).astype(param.dtype)
        elif not is_lora_param(name):
            merged[name] = param
    _save(output_path, merged)
    return Path(output_path)


def take_rank0(run, rank0_path: Path, output_path) -> Path:
    """A full-parameter run's weights: rank 0's, checked equal on every other rank."""
    weights = {n: p for n, p in read_checkpoint(rank0_path).items() if n.startswith(MODEL_PREFIXES)}
    run_dir = rank0_path.parents[2]
    rank = 1
    while (run_dir / "checkpoint" / f"rank_{rank}").is_dir():
        other = (
            run_dir
            / "checkpoint"
            / f"rank_{rank}"
            / rank0_path.name.replace("_rank_0-", f"_rank_{rank}-")
        )
        if other.is_file():
            theirs = read_checkpoint(other)
            differ = [
                n
                for n, p in weights.items()
                if not np.array_equal(_to_numpy(p), _to_numpy(theirs[n]))
            ]
            if differ:
                raise MindsftError(
                    f"{other}: data-parallel replicas differ from rank 0 in {', '.join(differ[:6])}"
                )
        rank += 1
    _save(output_path, weights)
    return Path(output_path)

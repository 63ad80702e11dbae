"""`mindsft merge-lora`: base checkpoint + LoRA training checkpoint -> one merged
checkpoint with the base's names and dtypes (what MindFormers'
transform_ckpt_lora.py writes). For a full-parameter run it takes rank 0's
weights, after checking the other ranks hold the same ones.

Mismatches are refused before anything is written: a LoRA checkpoint with a
config that has no pet_config, LoRA modules the config's target_modules does not
select (or a base tensor for them that is absent or of another shape), a rank
other than lora_rank, and a lora_alpha other than the one the run recorded
(mindsft's LoRA checkpoints carry it as the scalar `lora_alpha`; MindFormers'
and imported ones do not, and merge with the config's, as transform_ckpt_lora.py
takes the scaling it is given). Training checkpoints are taken only when their
checksums verify: given a run folder, the newest save that verifies on rank 0
and on its replicas, saying which newer ones it skipped.

Everything streams, without MindSpore: tensors that do not change are copied
file to file; a merged weight holds its LoRA update whole in float32 (out, in)
while its base rows pass through a block at a time; A and B are read when their
weight comes. Peak memory is one weight's update, whatever the model's size."""

import sys
from pathlib import Path

import numpy as np

from mindsft.atomic import check_writable
from mindsft.convert import raw
from mindsft.convert.ckpt import CkptWriter, read_entry, scan_ckpt
from mindsft.convert.names import MODEL_PREFIXES
from mindsft.errors import MindsftError
from mindsft.models.config import LlamaConfig
from mindsft.pet.config import LORA_A, LORA_ALPHA_RECORD, LORA_B, is_lora_param
from mindsft.pet.lora_checkpoint import check_against_config, lora_tensors
from mindsft.train.checkpoint import RunCheckpoints, verify


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resolve_checkpoint(path, rank: int = 0, say=_say) -> Path:
    """A checkpoint file, or under a run's train dir the newest of `rank` that
    verifies with its replicas (checkpoint.verify without `required`: mindsft's
    own by their checksums, MindFormers' by reading whole)."""
    path = Path(path)
    if path.is_file():
        reason = verify(path, required=False)
        if reason:
            raise MindsftError(f"{path}: {reason}")
        return path
    for root in (path, path / "train"):
        files = RunCheckpoints(root).files(rank)
        if files:
            return newest_verified(files, say)
    raise MindsftError(f"{path}: no checkpoint file, and no checkpoint/rank_{rank}/*.ckpt under it")


def newest_verified(files: list, say=_say) -> Path:
    """The newest of `files` (CheckpointFile, oldest first) that verifies together
    with the other ranks' files of its save; each one skipped is a line saying why."""
    for found in reversed(files):
        saves = (found.path, *replicas(found.path))
        bad = [(p, r) for p in saves if (r := verify(p, required=False))]
        if not bad:
            return found.path
        for p, reason in bad:
            say(f"skipping {p}: {reason}")
    raise MindsftError(f"{files[-1].path.parent}: no checkpoint verifies ({len(files)} tried)")


def merge_lora_checkpoint(cfg, base_checkpoint, lora_checkpoint, output_path) -> Path:
    """Write base + (alpha/rank) B @ A in each base tensor's dtype (computed in
    float32, as `pet.merge.merge_weight`), streamed."""
    check_writable(output_path, "file")
    lora_path = resolve_checkpoint(lora_checkpoint)
    if cfg.lora is None:
        check_full_checkpoint(lora_path, base_checkpoint, cfg.source)
        return take_rank0(lora_path, output_path)
    config = LlamaConfig.from_mindformers(cfg.model_config, where=f"{cfg.source}: model_config")
    modules = lora_tensors(lora_path)
    check_against_config(modules, config, cfg.lora, lora_path, cfg.source)
    check_recorded_alpha(lora_path, cfg.lora.lora_alpha, cfg.source)
    base_entries = {e.name: e for e in scan_ckpt(base_checkpoint)}
    for module, pair in modules.items():
        check_base_weight(base_entries, f"{module}.weight", pair, base_checkpoint, lora_path)
    pairs = {f"{module}.weight": pair for module, pair in modules.items()}
    with CkptWriter(output_path) as out:
        for entry in base_entries.values():
            if is_lora_param(entry.name):
                continue
            pair = pairs.get(entry.name)
            chunks = entry.ranges()
            if pair is not None:
                chunks = merged_rows(entry, pair[LORA_A], pair[LORA_B], cfg.lora.scaling)
            out.write_raw(entry.name, entry.dtype, entry.shape, chunks)
    return Path(output_path)


def blocks(chunks, size: int):
    """Re-cut a stream of bytes-likes into blocks of exactly `size` bytes (the last
    one shorter): a tensor stored in several records breaks anywhere. Chunks that
    already are whole blocks pass without a copy."""
    pending = bytearray()
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        if not pending:
            whole = len(view) - len(view) % size
            yield from (view[i : i + size] for i in range(0, whole, size))
            view = view[whole:]
        pending += view
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def _float32(entry: raw.FileTensor) -> np.ndarray:
    """A whole (small) tensor as float32."""
    data = raw.convert_chunk(memoryview(entry.read()).cast("B"), entry.dtype, "F32")
    return np.frombuffer(data, np.float32).reshape(entry.shape)


def merged_rows(base: raw.FileTensor, a: raw.FileTensor, b: raw.FileTensor, scaling: float):
    """The bytes of base + scaling * (B @ A) in the base's dtype, rows at a time.
    base (out, in), A (r, in), B (out, r); the update is float32 (out, in)."""
    delta = _float32(b) @ _float32(a)  # (out, in)
    delta *= np.float32(scaling)
    columns = delta.shape[1]
    rows = max(1, raw.CHUNK_BYTES // (16 * columns))  # float32 blocks of a quarter chunk
    size = rows * columns * raw.itemsize(base.dtype)
    start = 0
    for block in blocks(base.chunks(size), size):
        w32 = np.frombuffer(raw.convert_chunk(block, base.dtype, "F32"), np.float32)
        w32 = w32.reshape(-1, columns)  # (rows, in)
        merged = w32 + delta[start : start + len(w32)]
        start += len(w32)
        yield raw.convert_chunk(merged.reshape(-1), "F32", base.dtype)


def check_recorded_alpha(lora_path: Path, alpha: float, source) -> None:
    """The lora_alpha a mindsft LoRA checkpoint recorded must be the config's."""
    recorded = [e for e in scan_ckpt(lora_path) if e.name == LORA_ALPHA_RECORD]
    if recorded:
        value = float(read_entry(recorded[0]).reshape(-1)[0])
        if not np.isclose(value, alpha, rtol=1e-6, atol=0.0):
            raise MindsftError(
                f"{lora_path}: trained with lora_alpha {value:g}, {source}'s pet_config has "
                f"lora_alpha {alpha:g}"
            )


def check_base_weight(base_entries: dict, name: str, pair: dict, base_path, lora_path) -> None:
    """The base tensor a LoRA pair updates is there and has the update's shape."""
    update = (pair[LORA_B].shape[0], pair[LORA_A].shape[1])  # B (out, r) @ A (r, in)
    if name not in base_entries:
        raise MindsftError(
            f"{base_path}: has no tensor {name}, which the LoRA pair in {lora_path} updates"
        )
    if tuple(base_entries[name].shape) != tuple(update):
        raise MindsftError(
            f"{base_path}: tensor {name} has shape {list(base_entries[name].shape)}, the LoRA "
            f"pair in {lora_path} updates a {list(update)} weight"
        )


def check_full_checkpoint(rank0_path: Path, base_checkpoint, source) -> None:
    """A full-parameter run's checkpoint holds every base weight, in the base's
    shape, and no LoRA matrix (a LoRA run merged with a config without pet_config)."""
    entries = {e.name: e for e in scan_ckpt(rank0_path) if e.name.startswith(MODEL_PREFIXES)}
    lora = sorted(n for n in entries if is_lora_param(n))
    if lora:
        raise MindsftError(
            f"{rank0_path}: holds {len(lora)} LoRA matrices ({lora[0]}, ...) but {source} has "
            "no model.model_config.pet_config; merge with the LoRA run's YAML"
        )
    for base in scan_ckpt(base_checkpoint):
        if not base.name.startswith(MODEL_PREFIXES):
            continue
        if base.name not in entries:
            raise MindsftError(
                f"{rank0_path}: has no tensor {base.name} of the base {base_checkpoint}"
            )
        if tuple(entries[base.name].shape) != tuple(base.shape):
            raise MindsftError(
                f"{rank0_path}: tensor {base.name} has shape {list(entries[base.name].shape)}, "
                f"the base {base_checkpoint} has {list(base.shape)}"
            )


def replicas(path: Path) -> list:
    """The other ranks' files of the same save as `path`, where it sits in a run's
    checkpoint folder and they exist."""
    ckpts, this = RunCheckpoints.holding(path)
    if ckpts is None:
        return []
    others = (ckpts.file(r, this.epoch, this.step) for r in ckpts.ranks() if r != this.rank)
    return [other for other in others if other.is_file()]


def same_tensor(entry: raw.FileTensor, other) -> bool:
    """Whether `other` (a FileTensor or None) holds the same dtype, shape and bytes,
    compared a block at a time."""
    if other is None or (other.dtype, other.shape) != (entry.dtype, entry.shape):
        return False
    mine = blocks(entry.chunks(), raw.CHUNK_BYTES)
    theirs = blocks(other.chunks(), raw.CHUNK_BYTES)
    return all(x == y for x, y in zip(mine, theirs, strict=True))


def take_rank0(rank0_path: Path, output_path) -> Path:
    """A full-parameter run's weights: rank 0's, checked equal on every other rank
    block by block, and copied file to file."""
    others = [(other, {e.name: e for e in scan_ckpt(other)}) for other in replicas(rank0_path)]
    with CkptWriter(output_path) as out:
        for entry in scan_ckpt(rank0_path):
            if not entry.name.startswith(MODEL_PREFIXES):
                continue
            for other, entries in others:
                if not same_tensor(entry, entries.get(entry.name)):
                    raise MindsftError(
                        f"{other}: data-parallel replicas differ from rank 0 in {entry.name}"
                    )
            out.write_raw(entry.name, entry.dtype, entry.shape, entry.ranges())
    return Path(output_path)

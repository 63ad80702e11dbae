"""What `--load_checkpoint PATH` names, read as MindFormers reads it:

- a checkpoint file;
- a folder holding `rank_0 ... rank_{n-1}` as MindFormers writes them
  (`output/checkpoint/`, or the output folder above it): data-parallel replicas,
  or a single `rank_0`. The newest step every rank holds is taken (for files
  named without a step, MindFormers' rule: each rank's newest); each file is
  checked against its checksum where it has one, and the replicas are checked to
  hold the same tensors, one tensor at a time, the work spread over the workers
  (worker w checks ranks w, w + world, ...; every worker checks rank 0, which it
  loads);
- a folder directly holding `.ckpt` files: one checkpoint split over files (a
  base and a LoRA checkpoint, say), all loaded together.

Model-parallel shards are not resharded: `--auto_trans_ckpt True` with a
parallel_config that is not pure data parallel is refused in one line, and rank
folders whose files differ are refused naming the tensor.
"""

from pathlib import Path

from mindsft.convert.names import MODEL_PREFIXES
from mindsft.errors import MindsftError
from mindsft.train.checkpoint import RunCheckpoints, agreed_tensors, verify


def check_auto_trans(auto_trans_ckpt: bool, parallel_config: dict, source: str) -> None:
    """Refuse `--auto_trans_ckpt True` for a strategy that is not pure data parallel."""
    if not auto_trans_ckpt:
        return
    split = {}
    for key in ("model_parallel", "pipeline_stage", "context_parallel"):
        value = parallel_config.get(key) or 1
        if not isinstance(value, int) or value < 1:
            raise MindsftError(f"{source}: parallel_config.{key} {value!r}: expected a count")
        if value > 1:
            split[key] = value
    if split:
        shown = ", ".join(f"{k} {v}" for k, v in split.items())
        raise MindsftError(
            f"{source}: --auto_trans_ckpt True with parallel_config {shown}: model-parallel "
            "resharding is not supported (mindsft trains data parallel only)"
        )


def rank_root(path: Path) -> RunCheckpoints | None:
    """The rank folders under `path` (or `path/checkpoint`), if any."""
    for root in (path, path / "checkpoint"):
        ckpts = RunCheckpoints.at(root)
        if ckpts.ranks():
            return ckpts
    return None


def _held(ckpts: RunCheckpoints, ranks) -> str:
    parts = []
    for r in ranks:
        steps = [f"{f.epoch}_{f.step}" for f in ckpts.files(r)]
        parts.append(f"rank_{r}: {', '.join(steps) or 'none'}")
    return "; ".join(parts)


def newest_by_time(ckpts: RunCheckpoints, ranks) -> list | None:
    """MindFormers' own rule for rank folders whose files carry no step in their
    names (`rank_0/llama2_7b.ckpt`): each rank's newest .ckpt by modification time;
    None when some file does carry a step (the step rule applies)."""
    found = [
        sorted(ckpts.rank_dir(r).glob("*.ckpt"), key=lambda p: p.stat().st_mtime) for r in ranks
    ]
    if not all(found) or any(ckpts.files(r) for r in ranks):
        return None
    return [files[-1] for files in found]


def newest_common_files(ckpts: RunCheckpoints) -> list:
    """Every rank's file of the newest (epoch, step) all ranks hold, rank 0 first."""
    ranks = ckpts.ranks()
    if ranks != list(range(len(ranks))):
        raise MindsftError(
            f"{ckpts.root}: rank folders must be rank_0 ... rank_{{n-1}}, found "
            f"{', '.join(f'rank_{r}' for r in ranks)}"
        )
    unnamed = newest_by_time(ckpts, ranks)
    if unnamed:
        return unnamed
    common = ckpts.common_steps(ranks)
    if not common:
        raise MindsftError(
            f"{ckpts.root}: the ranks have no step in common ({_held(ckpts, ranks)})"
        )
    position = max(common)
    return [ckpts.at_position(r, position).path for r in ranks]


def weight_files(path, rank: int = 0, world: int = 1) -> list:
    """The checkpoint files whose tensors together are the weights `path` names,
    checked as the module docstring says (this worker's share of the checks)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MindsftError(f"{path}: no such checkpoint file or folder")
    ckpts = rank_root(path)
    if ckpts is None:
        loose = sorted(path.glob("*.ckpt"))
        if not loose:
            raise MindsftError(
                f"{path}: holds no rank_* folders (MindFormers' checkpoint layout) and no "
                ".ckpt files"
            )
        return loose
    files = newest_common_files(ckpts)
    mine = [f for i, f in enumerate(files) if i % world == rank and i != 0]
    for f in [files[0], *mine]:
        reason = verify(f, required=False)
        if reason:
            raise MindsftError(f"{f}: {reason}")
    if mine:
        for _ in agreed_tensors(files[0], mine, lambda n: n.startswith(MODEL_PREFIXES)):
            pass
    return [files[0]]

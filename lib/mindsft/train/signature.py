"""A run's signature: what its checkpoints must agree with to be resumed.

Every training checkpoint stores the signature of the run that wrote it. Resume
compares it with the signature of the run about to continue and refuses, naming
each difference, unless the difference is one resume handles exactly:

- `epochs` may change when the learning rates of the steps already done are the
  same under the new run length (a constant schedule after warmup_steps, or an
  explicit lr_schedule.total_steps). The data order of an epoch depends on the
  seed and the epoch only, so the steps ahead are those of an uninterrupted run
  with the new epoch count.
- Checkpoint cadence and naming (save_checkpoint_steps, keep_checkpoint_max,
  prefix) and the execution mode (context.mode) are not part of it.

Everything else that changes results is: the dataset (sha256 and rows), the
weights the run started from (sha256), batch size, world size, gradient
accumulation, seed, num_samples, shuffling, clipping, and a digest of each
result-changing config section (model_config, optimizer, lr_schedule, pet_config).
"""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from mindsft.files import file_sha256
from mindsft.train.optim import learning_rate, resolve_schedule

# fields compared as they are; `epochs` and `lr_total_steps` are judged by the
# schedule; `base_paths` only tells a LoRA checkpoint where its base was
FIELDS = (
    "dataset",
    "base",
    "batch_size",
    "world_size",
    "gradient_accumulation_steps",
    "seed",
    "num_samples",
    "shuffle",
    "max_grad_norm",
    "model_config",
    "optimizer",
    "lr_schedule",
    "pet_config",
)


def _digest(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_signature(cfg, *, dataset, rows: int, base_files, world_size: int, total_steps: int):
    """The signature of a run of `cfg` over `dataset` (`rows` rows) from the weights
    in `base_files`, on `world_size` workers, `total_steps` optimizer steps long."""
    tc = cfg.train
    return {
        "dataset": {"sha256": file_sha256(dataset), "rows": rows},
        "base": [file_sha256(path) for path in base_files],
        "base_paths": [str(Path(path).resolve()) for path in base_files],
        "batch_size": tc.batch_size,
        "world_size": world_size,
        "gradient_accumulation_steps": tc.gradient_accumulation_steps,
        "seed": tc.seed,
        "num_samples": tc.num_samples,
        "shuffle": tc.shuffle,
        "max_grad_norm": tc.max_grad_norm,
        "model_config": _digest(cfg.model_config),
        "optimizer": _digest(asdict(cfg.optimizer)),
        "lr_schedule": _digest(asdict(cfg.schedule)),
        "pet_config": _digest(asdict(cfg.lora) if cfg.lora is not None else None),
        "epochs": tc.epochs,
        "lr_total_steps": resolve_schedule(cfg.schedule, total_steps)[1],
    }


def _shown(key: str, value) -> str:
    if key == "dataset" and isinstance(value, dict):
        return f"{value.get('rows')} rows, sha256 {str(value.get('sha256'))[:12]}"
    if key == "base" and isinstance(value, list):
        return ", ".join(f"sha256 {str(v)[:12]}" for v in value)
    return repr(value)


def differences(saved: dict, current: dict, schedule, done: int) -> list:
    """'key: saved -> current' for every difference resume cannot handle, given
    the `schedule` config (the same on both sides, else it is a difference) and
    the `done` optimizer steps the checkpoint holds."""
    found = [
        f"{key}: {_shown(key, saved.get(key))} -> {_shown(key, current.get(key))}"
        for key in FIELDS
        if saved.get(key) != current.get(key)
    ]
    if found or saved.get("epochs") == current.get("epochs"):
        return found
    old, new = saved.get("lr_total_steps"), current.get("lr_total_steps")
    if old != new and any(
        learning_rate(schedule, s, old) != learning_rate(schedule, s, new) for s in range(done)
    ):
        found.append(
            f"epochs: {saved.get('epochs')} -> {current.get('epochs')} changes the learning "
            f"rates of the {done} steps done (the schedule spans {old} -> {new} steps; set "
            "lr_schedule.total_steps to extend a run)"
        )
    return found

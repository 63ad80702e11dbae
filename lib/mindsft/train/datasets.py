"""The training data of one worker: its shard of the MindRecord, checked against
the run mode and the model, and the run's length in optimizer steps."""

from mindsft.data.reader import MindRecordBatches, require_kind
from mindsft.errors import MindsftError

# the MindRecord kind each training run mode reads (`preprocess --dataset_type`)
DATASET_KIND = {"train": "wiki", "finetune": "qa"}


def dataset_kind(run_mode) -> str:
    """The MindRecord kind a run mode trains on: wiki for train, qa otherwise."""
    return DATASET_KIND.get(run_mode, "qa")


def train_batches(cfg, dataset: str, seq_length: int, rank: int, world: int):
    """Worker `rank` of `world`'s shard of `dataset`, refused unless it is of the
    run mode's kind and of the model's `seq_length`."""
    tc = cfg.train
    batches = MindRecordBatches(
        dataset,
        tc.batch_size,
        shard_id=rank,
        num_shards=world,
        shuffle=tc.shuffle,
        seed=tc.seed,
        drop_remainder=True,
    )
    mode = cfg.run.run_mode or "finetune"
    require_kind(dataset, batches.kind, dataset_kind(mode), f"run_mode {mode}")
    if batches.seq_length != seq_length:
        packed = "packed " if batches.packed else ""
        raise MindsftError(
            f"{dataset}: {packed}dataset seq_length {batches.seq_length} differs from "
            f"the config's seq_length {seq_length} ({cfg.source})"
        )
    return batches


def run_length(batches, tc, world: int, dataset: str) -> tuple:
    """(optimizer steps per epoch, in the run) of `batches` under the train config
    `tc` with `world` workers; refused when that is no step at all."""
    per_epoch = len(batches)
    if tc.num_samples:
        per_epoch = min(per_epoch, tc.num_samples // (tc.batch_size * world))
    steps_per_epoch = per_epoch // tc.gradient_accumulation_steps
    total_steps = tc.epochs * steps_per_epoch
    if total_steps < 1:
        raise MindsftError(
            f"{dataset}: {batches.rows} rows give no optimizer step at batch_size "
            f"{tc.batch_size} x {world} worker(s) x {tc.gradient_accumulation_steps} "
            "accumulation"
        )
    return steps_per_epoch, total_steps

"""Every key of a MindFormers finetune YAML, accounted for: read by mindsft
(`KEYS`, with the kind of value it takes, checked before anything else: a value
of another kind is one line naming the key path), known not to change results on
this engine (device placement, logging, graph dumps), or reported by name
(`unsupported_keys`) when it would change results and mindsft does not implement it
with the value given. An unknown key that is a near miss of a known one
(`epohcs`) is an error saying which was meant. mindsft.train.config reads the
validated tree into dataclasses.
"""

from mindsft.keys import (
    BOOL,
    FRACTION,
    INT,
    LIST_OF_MAPPINGS,
    MAPPING,
    NON_NEGATIVE_INT,
    NUMBER,
    POSITIVE_INT,
    POSITIVE_NUMBER,
    TEXT,
    Kind,
    check_kinds,
    check_near_misses,
)
from mindsft.models.config import MODEL_CONFIG_KEYS

# MindFormers' select_recompute: on or off, or which layers / ops
SELECT = Kind("true, false, a list or a mapping", (bool, list, dict))
# every key mindsft reads, with the kind of value it takes (callbacks by their
# type: callbacks.CheckpointMonitor.prefix); a new key is one line here
KEYS = {
    "seed": INT,
    "run_mode": TEXT.or_none(),
    "load_checkpoint": TEXT.or_none(),
    "output_dir": TEXT.or_none(),
    "use_parallel": BOOL,
    "resume_training": Kind("true or false", (bool, str)),  # run refuses a checkpoint name
    "auto_trans_ckpt": BOOL,
    "src_strategy_path_or_dir": TEXT.or_none(),
    "do_eval": BOOL,
    "eval_step_interval": INT,
    "eval_epoch_interval": INT,
    "metric": Kind("a mapping or a metric name", (dict, str)),
    "metric.type": TEXT,
    "processor": MAPPING,
    "processor.tokenizer": MAPPING,
    "processor.tokenizer.vocab_file": TEXT.or_none(),
    "tensorboard": MAPPING.or_none(),  # each setting checked by TensorBoardConfig
    "runner_config": MAPPING,
    "runner_config.epochs": POSITIVE_INT,
    "runner_config.batch_size": POSITIVE_INT,
    "runner_config.gradient_accumulation_steps": POSITIVE_INT,
    "train_dataset": MAPPING,
    "train_dataset.batch_size": POSITIVE_INT,
    "train_dataset.drop_remainder": BOOL,
    "train_dataset.data_loader": MAPPING,
    "train_dataset.data_loader.shuffle": BOOL,
    "train_dataset.data_loader.dataset_dir": TEXT.or_none(),
    "eval_dataset": MAPPING,
    "eval_dataset.data_loader": MAPPING,
    "eval_dataset.data_loader.dataset_dir": TEXT.or_none(),
    "runner_wrapper": MAPPING,
    "runner_wrapper.use_clip_grad": BOOL,
    "runner_wrapper.max_grad_norm": POSITIVE_NUMBER,
    "callbacks": LIST_OF_MAPPINGS,
    "callbacks.CheckpointMonitor.prefix": TEXT,
    "callbacks.CheckpointMonitor.save_checkpoint_steps": POSITIVE_INT,
    "callbacks.CheckpointMonitor.keep_checkpoint_max": INT,
    "context": MAPPING,
    "context.mode": Kind("0 (GRAPH_MODE) or 1 (PYNATIVE_MODE)", (int,), lambda v: v in (0, 1)),
    "optimizer": MAPPING,
    "optimizer.type": TEXT,
    "optimizer.learning_rate": NUMBER,
    "optimizer.beta1": FRACTION,
    "optimizer.beta2": FRACTION,
    "optimizer.eps": POSITIVE_NUMBER,
    "optimizer.weight_decay": NUMBER,
    "lr_schedule": MAPPING,
    "lr_schedule.type": TEXT,
    "lr_schedule.learning_rate": NUMBER,
    "lr_schedule.warmup_steps": NON_NEGATIVE_INT.or_none(),
    "lr_schedule.warmup_ratio": FRACTION.or_none(),
    "lr_schedule.warmup_lr_init": NUMBER,
    "lr_schedule.lr_end": NUMBER,
    "lr_schedule.total_steps": INT.or_none(),
    "model": MAPPING,
    "model.model_config": MAPPING,
    **{f"model.model_config.{key}": kind for key, kind in MODEL_CONFIG_KEYS.items()},
    "model.model_config.pet_config": MAPPING,
    "model.model_config.pet_config.pet_type": TEXT,
    "model.model_config.pet_config.lora_rank": POSITIVE_INT,
    "model.model_config.pet_config.lora_alpha": NUMBER,
    "model.model_config.pet_config.lora_dropout": FRACTION,
    "model.model_config.pet_config.target_modules": TEXT,
    "recompute_config": MAPPING,
    "recompute_config.recompute": BOOL,
    "recompute_config.select_recompute": SELECT,
    "recompute_config.select_comm_recompute": SELECT,
    "recompute_config.parallel_optimizer_comm_recompute": BOOL,
    "recompute_config.mp_comm_recompute": BOOL,
    "recompute_config.recompute_slice_activation": BOOL,
}

# keys that do not change results on this engine (placement, speed, logging, dumps)
NO_EFFECT = {
    "only_save_strategy",
    "trainer",
    "eval_dataset",
    "eval_dataset_task",
    "processor",
    "metric",
    "eval_callbacks",
    "auto_tune",
    "filepath_prefix",
    "autotune_per_step",
    "profile",
    "profile_start_step",
    "profile_stop_step",
    "init_start_profile",
    "profile_communication",
    "profile_memory",
    "remote_save_url",
    "context",
    "parallel",
    "runner_config.sink_mode",
    "runner_config.sink_size",
    "train_dataset.data_loader.type",
    "train_dataset.input_columns",
    "train_dataset.num_parallel_workers",
    "train_dataset.python_multiprocessing",
    "train_dataset.repeat",
    "train_dataset.numa_enable",
    "train_dataset.prefetch_size",
    "train_dataset.batch_size",
    "train_dataset_task",
    "parallel_config.model_parallel",
    "parallel_config.use_seq_parallel",
    "parallel_config.micro_batch_num",
    "parallel_config.vocab_emb_dp",
    "parallel_config.gradient_aggregation_group",
    "parallel_config.data_parallel",
    "runner_wrapper.type",
    "callbacks.MFLossMonitor",
    "callbacks.ObsMonitor",
    "callbacks.CheckpointMonitor.integrated_save",
    "callbacks.CheckpointMonitor.async_save",
    "callbacks.CheckpointMonitor.type",
    "model.arch",
    "model.model_config",
    "lr_scale_factor",
    "layer_decay",
}
# keys that change results unless they hold the value mindsft implements
NEUTRAL = {
    "micro_batch_interleave_num": 1,
    "layer_scale": False,
    "lr_scale": False,
    "parallel_config.pipeline_stage": 1,
    "runner_wrapper.use_clip_grad": None,  # implemented; listed to consume it
    # a loss-scale cell (fp16 overflow skipping) is not implemented
    "runner_wrapper.scale_sense": 1.0,
    "lr_schedule.num_cycles": 0.5,
    "lr_schedule.decay_steps": None,
    "lr_schedule.decay_ratio": None,
}
# recompute_config's finer settings and MindFormers' defaults: mindsft recomputes whole
# layers only, so another value is listed (it would change memory and speed, not results)
RECOMPUTE_DEFAULTS = {
    "select_recompute": False,
    "select_comm_recompute": False,
    "parallel_optimizer_comm_recompute": False,
    "mp_comm_recompute": True,
    "recompute_slice_activation": False,
}
# model_config keys whose non-default values mindsft's Llama does not implement
MODEL_NEUTRAL = {"extend_method": "None", "scaling_factor": 1.0, "use_past": False, "offset": 0}
# sections whose reader checks each of their keys itself
CHECKED_BY_OWNER = ("tensorboard", "recompute_config")
# MindFormers keys mindsft does not implement that look like ones it reads: known,
# so never taken for a typo of those, and reported by name like any other
MINDFORMERS_ONLY = {"optimizer.betas", "callbacks.CheckpointMonitor.save_checkpoint_seconds"}


def _flatten(d, prefix=""):
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from _flatten(v, path + ".")
        else:
            yield path, v


def _covered(path: str, table) -> bool:
    return any(path == k or path.startswith(k + ".") for k in table)


def _by_type(raw: dict) -> dict:
    """`raw` with the callbacks list as {type: entry}, so every key has a dotted path."""
    callbacks = raw.get("callbacks")
    if not isinstance(callbacks, list):
        return raw
    return {**raw, "callbacks": {str(cb.get("type", "?")): cb for cb in callbacks}}


def validate(raw: dict, source: str) -> dict:
    """Check the kind of every key mindsft reads and refuse near misses of known
    keys; return `raw` with callbacks by type (see `_by_type`)."""
    check_kinds(raw, {"callbacks": KEYS["callbacks"]}, source)
    tree = _by_type(raw)
    check_kinds(tree, {k: kind for k, kind in KEYS.items() if k != "callbacks"}, source)
    model_keys = ["type", *MODEL_NEUTRAL]
    known = [*KEYS, *NO_EFFECT, *NEUTRAL, *MINDFORMERS_ONLY]
    check_near_misses(tree, known + [f"model.model_config.{k}" for k in model_keys], source)
    return tree


def section(tree: dict, dotted: str) -> dict:
    """The mapping at `dotted` (validated), {} where absent or null."""
    node = tree
    for part in dotted.split("."):
        node = node.get(part) or {}
    return node


def unsupported_keys(tree: dict, model_config: dict) -> list:
    """'key=value' for every result-changing key mindsft does not implement."""
    unsupported = []
    for path, value in _flatten(tree):
        if path in KEYS or _covered(path, CHECKED_BY_OWNER):
            continue
        if path in NEUTRAL:
            if NEUTRAL[path] is not None and value != NEUTRAL[path]:
                unsupported.append(f"{path}={value!r}")
            continue
        if not _covered(path, NO_EFFECT):
            unsupported.append(f"{path}={value!r}")
    if section(tree, "train_dataset").get("drop_remainder") is False:
        unsupported.append("train_dataset.drop_remainder=False")
    for key, neutral in MODEL_NEUTRAL.items():
        if key in model_config and model_config[key] != neutral:
            unsupported.append(f"model.model_config.{key}={model_config[key]!r}")
    return unsupported

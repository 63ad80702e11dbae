"""MindFormers-shaped finetune YAML -> dataclasses.

Reads `finetune_llama2_7b.yaml` / `lora_llama2_7b.yaml` as MindFormers ships
them. Every key is accounted for: read by mindsft (`KEYS`, with the kind of value
it takes, checked before anything else: a value of another kind is one line
naming the key path), known not to change results on this engine (device
placement, logging, graph dumps), or reported by name in
`FinetuneConfig.unsupported` when it would change results and mindsft does not
implement it with the value given. An unknown key that is a near miss of a known
one (`epohcs`) is an error saying which was meant.
"""

from dataclasses import dataclass, field
from pathlib import Path

from mindsft.errors import MindsftError
from mindsft.files import read_yaml
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
from mindsft.pet.config import LoraConfig
from mindsft.train.tensorboard import TensorBoardConfig

OPTIMIZERS = ("AdamWeightDecay", "FP32StateAdamWeightDecay", "AdamW")
SCHEDULES = ("CosineWithWarmUpLR", "ConstantWarmUpLR", "constant_with_warmup")

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


@dataclass
class OptimizerConfig:
    """MindFormers' `optimizer:` block: AdamWeightDecay semantics."""

    type: str = "AdamWeightDecay"
    """AdamWeightDecay / FP32StateAdamWeightDecay (identical here: states are float32)."""
    learning_rate: float = 1e-3
    """Used when there is no lr_schedule."""
    beta1: float = 0.9
    """First-moment decay."""
    beta2: float = 0.999
    """Second-moment decay."""
    eps: float = 1e-6
    """Added to sqrt(v), outside the root (MindSpore's AdamWeightDecay default)."""
    weight_decay: float = 0.0
    """Decoupled decay on matrices only (1-D parameters and biases are exempt)."""


@dataclass
class ScheduleConfig:
    """MindFormers' `lr_schedule:` block."""

    type: str = "CosineWithWarmUpLR"
    """CosineWithWarmUpLR or ConstantWarmUpLR (constant with warmup)."""
    learning_rate: float = 1e-5
    """Peak learning rate."""
    warmup_steps: int = 0
    """Linear warmup length in optimizer steps (ignored when warmup_ratio is set)."""
    warmup_ratio: float | None = None
    """Warmup as a fraction of total_steps."""
    warmup_lr_init: float = 0.0
    """Learning rate at step 0 of warmup."""
    lr_end: float = 0.0
    """Cosine floor."""
    total_steps: int = -1
    """-1: epochs x optimizer steps per epoch, as MindFormers fills it in."""


@dataclass
class TrainConfig:
    """Training-loop hyperparameters (runner_config, dataset, wrapper, callbacks)."""

    seed: int = 0
    """Seeds LoRA init, data shuffling and dropout masks."""
    epochs: int = 1
    """Passes over the dataset."""
    batch_size: int = 1
    """Per-worker micro-batch (runner_config.batch_size, as MindFormers)."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step; token-weighted, so equal to one larger batch."""
    max_grad_norm: float | None = 1.0
    """Clip by global norm (runner_wrapper.use_clip_grad); None disables."""
    shuffle: bool = True
    """Shuffle rows each epoch (seeded, epoch-dependent)."""
    num_samples: int | None = None
    """Use only the first N rows of the dataset."""
    save_checkpoint_steps: int = 100
    """Checkpoint every N optimizer steps (and always at the end)."""
    keep_checkpoint_max: int = 5
    """Keep only the newest N checkpoints per rank."""
    prefix: str = "llama"
    """Checkpoint file prefix (CheckpointMonitor.prefix)."""
    jit: bool = True
    """Compile the train step (context.mode 0 = GRAPH); 1 = PyNative."""


@dataclass
class RunConfig:
    """run_mindformer.py's settings as the YAML's top level gives them; its flags
    (`mindsft run --run_mode ... --do_eval ...`) override them."""

    run_mode: str | None = None
    """train (pretraining: wiki rows), finetune (qa rows), eval or predict."""
    load_checkpoint: str = ""
    """Weights to start from (a checkpoint file)."""
    output_dir: str = "./output"
    """checkpoint/, loss.jsonl, eval and predict results go here."""
    train_dataset_dir: str = ""
    """train_dataset.data_loader.dataset_dir: the training MindRecord."""
    eval_dataset_dir: str = ""
    """eval_dataset.data_loader.dataset_dir: the MindRecord evaluated."""
    use_parallel: bool = False
    """Data parallel under msrun."""
    resume_training: bool = False
    """Continue from the newest checkpoint in output_dir."""
    auto_trans_ckpt: bool = False
    """Reshard load_checkpoint to this run's strategy (data-parallel replicas need none)."""
    src_strategy_path_or_dir: str = ""
    """The sharding strategy load_checkpoint was saved with."""
    do_eval: bool = False
    """Evaluate eval_dataset_dir during training."""
    eval_step_interval: int = 100
    """Evaluate every N optimizer steps while training (<= 0: never)."""
    eval_epoch_interval: int = -1
    """Evaluate after every N-th epoch (<= 0: never)."""
    metric: str = "PerplexityMetric"
    """metric.type: what eval computes."""
    vocab_file: str = ""
    """processor.tokenizer.vocab_file: the SentencePiece model predict decodes with."""
    device_memory: str = ""
    """--device_memory: memory per device (64GB, ...); empty: context.max_device_memory."""
    check_memory: bool = True
    """--check_memory False: start even when the memory plan says the run does not fit."""


@dataclass
class FinetuneConfig:
    """Everything a finetune run needs from the YAML."""

    model_config: dict
    """`model.model_config` minus pet_config, for LlamaConfig.from_mindformers."""
    train: TrainConfig = field(default_factory=TrainConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    lora: LoraConfig | None = None
    """Set when model_config.pet_config has pet_type lora."""
    unsupported: list = field(default_factory=list)
    """'key=value' for every result-changing key mindsft does not implement."""
    source: str = ""
    """The YAML path."""
    run: RunConfig = field(default_factory=RunConfig)
    """run_mindformer.py's top-level settings (run_mode, datasets, do_eval, ...)."""
    tensorboard: TensorBoardConfig | None = None
    """Set when tensorboard.tensorboard_dir is: event files of the run."""
    parallel_config: dict = field(default_factory=dict)
    """`parallel_config` as written (data/model/pipeline parallel degrees)."""
    recompute: bool = False
    """recompute_config.recompute: each decoder layer's activations are recomputed in
    the backward pass instead of kept (MindSpore's Cell.recompute)."""
    recompute_not_implemented: list = field(default_factory=list)
    """'recompute_config.key=value' for finer recompute settings mindsft does not do."""


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


def _section(tree: dict, dotted: str) -> dict:
    """The mapping at `dotted` (validated), {} where absent or null."""
    node = tree
    for part in dotted.split("."):
        node = node.get(part) or {}
    return node


def _checkpointing(tree: dict, train: TrainConfig) -> None:
    """CheckpointMonitor's prefix, save interval and how many to keep."""
    monitor = _section(tree, "callbacks.CheckpointMonitor")
    train.prefix = str(monitor.get("prefix", train.prefix))
    train.save_checkpoint_steps = monitor.get("save_checkpoint_steps", 100)
    train.keep_checkpoint_max = monitor.get("keep_checkpoint_max", 5)


def _model(tree: dict, source: str) -> tuple:
    """(model_config without pet_config, LoraConfig or None) from `model.model_config`."""
    model_block = _section(tree, "model").get("model_config")
    if not isinstance(model_block, dict):
        raise MindsftError(f"{source}: model.model_config is missing")
    model_config = {k: v for k, v in model_block.items() if k != "pet_config"}
    pet = model_block.get("pet_config")
    return model_config, LoraConfig.from_pet_config(pet) if pet else None


def _train(tree: dict) -> TrainConfig:
    """TrainConfig from runner_config, train_dataset, runner_wrapper, context and
    callbacks (validated)."""
    runner, wrapper = _section(tree, "runner_config"), _section(tree, "runner_wrapper")
    dataset = _section(tree, "train_dataset")
    train = TrainConfig(
        seed=tree.get("seed", 0),
        epochs=runner.get("epochs", 1),
        batch_size=runner.get("batch_size", dataset.get("batch_size", 1)),
        gradient_accumulation_steps=runner.get("gradient_accumulation_steps", 1),
        max_grad_norm=(
            float(wrapper.get("max_grad_norm", 1.0)) if wrapper.get("use_clip_grad") else None
        ),
        shuffle=_section(tree, "train_dataset.data_loader").get("shuffle", True),
        jit=_section(tree, "context").get("mode", 0) == 0,
    )
    _checkpointing(tree, train)
    return train


def _run(tree: dict) -> RunConfig:
    """RunConfig from the YAML's top level, its dataset sections, metric and processor
    (validated)."""
    metric = tree.get("metric") or {}
    return RunConfig(
        run_mode=tree.get("run_mode"),
        load_checkpoint=tree.get("load_checkpoint") or "",
        output_dir=tree.get("output_dir") or "./output",
        train_dataset_dir=_section(tree, "train_dataset.data_loader").get("dataset_dir") or "",
        eval_dataset_dir=_section(tree, "eval_dataset.data_loader").get("dataset_dir") or "",
        use_parallel=tree.get("use_parallel", False),
        resume_training=tree.get("resume_training", False),
        auto_trans_ckpt=tree.get("auto_trans_ckpt", False),
        src_strategy_path_or_dir=tree.get("src_strategy_path_or_dir") or "",
        do_eval=tree.get("do_eval", False),
        eval_step_interval=tree.get("eval_step_interval", 100),
        eval_epoch_interval=tree.get("eval_epoch_interval", -1),
        metric=metric.get("type", "PerplexityMetric") if isinstance(metric, dict) else metric,
        vocab_file=_section(tree, "processor.tokenizer").get("vocab_file") or "",
    )


def _recompute(tree: dict) -> tuple:
    """(recompute, 'key=value' of the finer settings not implemented) from
    `recompute_config` (validated)."""
    block = _section(tree, "recompute_config")
    skipped = [
        f"recompute_config.{key}={value!r}"
        for key, value in block.items()
        if key != "recompute" and value != RECOMPUTE_DEFAULTS.get(key)
    ]
    return block.get("recompute", False), skipped


def _optimizer(tree: dict, source: str) -> OptimizerConfig:
    opt_raw = _section(tree, "optimizer")
    optimizer = OptimizerConfig(
        type=opt_raw.get("type", "AdamWeightDecay"),
        **{
            k: float(opt_raw.get(k, getattr(OptimizerConfig, k)))
            for k in ("learning_rate", "beta1", "beta2", "eps", "weight_decay")
        },
    )
    if optimizer.type not in OPTIMIZERS:
        raise MindsftError(
            f"{source}: optimizer.type {optimizer.type!r} is unknown (supported: "
            f"{list(OPTIMIZERS)})"
        )
    return optimizer


def _schedule(tree: dict, optimizer: OptimizerConfig, source: str) -> ScheduleConfig:
    """`lr_schedule`, or the optimizer's constant learning rate without one."""
    sched_raw = _section(tree, "lr_schedule") or {
        "type": "ConstantWarmUpLR",
        "learning_rate": optimizer.learning_rate,
    }
    ratio = sched_raw.get("warmup_ratio")
    schedule = ScheduleConfig(
        type=sched_raw.get("type", "CosineWithWarmUpLR"),
        learning_rate=float(sched_raw.get("learning_rate", optimizer.learning_rate)),
        warmup_steps=sched_raw.get("warmup_steps") or 0,
        warmup_ratio=None if ratio is None else float(ratio),
        warmup_lr_init=float(sched_raw.get("warmup_lr_init", 0.0)),
        lr_end=float(sched_raw.get("lr_end", 0.0)),
        total_steps=sched_raw.get("total_steps") or -1,
    )
    if schedule.type not in SCHEDULES:
        raise MindsftError(
            f"{source}: lr_schedule.type {schedule.type!r} is unknown (supported: "
            f"{list(SCHEDULES)})"
        )
    return schedule


def _unsupported(tree: dict, model_config: dict) -> list:
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
    if _section(tree, "train_dataset").get("drop_remainder") is False:
        unsupported.append("train_dataset.drop_remainder=False")
    for key, neutral in MODEL_NEUTRAL.items():
        if key in model_config and model_config[key] != neutral:
            unsupported.append(f"model.model_config.{key}={model_config[key]!r}")
    return unsupported


def parse_finetune_config(raw: dict, source: str = "<dict>") -> FinetuneConfig:
    """Turn a MindFormers finetune YAML (already loaded) into a FinetuneConfig."""
    tree = validate(raw, source)
    model_config, lora = _model(tree, source)
    train = _train(tree)
    optimizer = _optimizer(tree, source)
    schedule = _schedule(tree, optimizer, source)
    unsupported = _unsupported(tree, model_config)
    parallel = _section(tree, "parallel_config")
    recompute, recompute_skipped = _recompute(tree)
    return FinetuneConfig(
        model_config,
        train,
        optimizer,
        schedule,
        lora,
        unsupported,
        str(source),
        run=_run(tree),
        tensorboard=TensorBoardConfig.from_yaml(tree.get("tensorboard"), source),
        parallel_config=dict(parallel),
        recompute=recompute,
        recompute_not_implemented=recompute_skipped,
    )


def load_finetune_config(path) -> FinetuneConfig:
    """Read a MindFormers finetune YAML file."""
    return parse_finetune_config(read_yaml(path), str(Path(path)))

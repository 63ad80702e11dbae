"""MindFormers-shaped finetune YAML -> dataclasses.

Reads `finetune_llama2_7b.yaml` / `lora_llama2_7b.yaml` as MindFormers ships
them. Every key is accounted for: implemented, known not to change results on
this engine (device placement, logging, graph dumps), or reported by name in
`FinetuneConfig.unsupported` when it would change results and mindsft does
not implement it with the value given.
"""

from dataclasses import dataclass, field
from pathlib import Path

from mindsft.errors import MindsftError
from mindsft.files import read_yaml
from mindsft.pet.config import LoraConfig
from mindsft.train.tensorboard import TensorBoardConfig

OPTIMIZERS = ("AdamWeightDecay", "FP32StateAdamWeightDecay", "AdamW")
SCHEDULES = ("CosineWithWarmUpLR", "ConstantWarmUpLR", "constant_with_warmup")

# keys that do not change results on this engine (placement, speed, logging, dumps)
NO_EFFECT = {
    "output_dir",
    "load_checkpoint",
    "src_strategy_path_or_dir",
    "auto_trans_ckpt",
    "only_save_strategy",
    "resume_training",
    "run_mode",
    "trainer",
    "use_parallel",
    "do_eval",
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
    "recompute_config",
    "runner_config.sink_mode",
    "runner_config.sink_size",
    "train_dataset.data_loader.type",
    "train_dataset.data_loader.dataset_dir",
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
# model_config keys whose non-default values mindsft's Llama does not implement
MODEL_NEUTRAL = {"extend_method": "None", "scaling_factor": 1.0, "use_past": False, "offset": 0}


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


def _flatten(d, prefix=""):
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from _flatten(v, path + ".")
        else:
            yield path, v


def _covered(path: str, table) -> bool:
    return any(path == k or path.startswith(k + ".") for k in table)


def _take(block: dict, key: str, default, cast, where: str):
    value = block.get(key, default)
    if value is None:
        return None
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise MindsftError(f"{where}.{key}: cannot read {value!r} as {cast.__name__}") from None


def _callbacks(raw, train: TrainConfig, src: str) -> dict:
    """Read CheckpointMonitor; return callback keys as flat 'callbacks.Type.key' paths."""
    flat = {}
    for cb in raw or []:
        cb_type = str(cb.get("type", "?"))
        for k, v in cb.items():
            flat[f"callbacks.{cb_type}.{k}"] = v
        if cb_type == "CheckpointMonitor":
            train.prefix = str(cb.get("prefix", train.prefix))
            train.save_checkpoint_steps = _take(
                cb, "save_checkpoint_steps", 100, int, f"{src}: callbacks"
            )
            train.keep_checkpoint_max = _take(
                cb, "keep_checkpoint_max", 5, int, f"{src}: callbacks"
            )
    return flat


def _model(raw: dict, source: str) -> tuple:
    """(model_config without pet_config, LoraConfig or None) from `model.model_config`."""
    model_block = (raw.get("model") or {}).get("model_config")
    if not isinstance(model_block, dict):
        raise MindsftError(f"{source}: model.model_config is missing")
    model_config = {k: v for k, v in model_block.items() if k != "pet_config"}
    pet = model_block.get("pet_config")
    return model_config, LoraConfig.from_pet_config(pet) if pet else None


def _train(raw: dict, source: str) -> tuple:
    """(TrainConfig, the callbacks' keys as flat paths) from runner_config,
    train_dataset, runner_wrapper, context and callbacks."""
    runner = raw.get("runner_config") or {}
    dataset = raw.get("train_dataset") or {}
    loader = dataset.get("data_loader") or {}
    wrapper = raw.get("runner_wrapper") or {}
    where = f"{source}: runner_config"
    train = TrainConfig(
        seed=_take(raw, "seed", 0, int, source),
        epochs=_take(runner, "epochs", 1, int, where),
        batch_size=_take(runner, "batch_size", dataset.get("batch_size", 1), int, where),
        gradient_accumulation_steps=_take(runner, "gradient_accumulation_steps", 1, int, where),
        max_grad_norm=(
            _take(wrapper, "max_grad_norm", 1.0, float, f"{source}: runner_wrapper")
            if wrapper.get("use_clip_grad", False)
            else None
        ),
        shuffle=bool(loader.get("shuffle", True)),
        jit=int((raw.get("context") or {}).get("mode", 0)) == 0,
    )
    return train, _callbacks(raw.get("callbacks"), train, source)


def _run(raw: dict, source: str) -> RunConfig:
    """RunConfig from the YAML's top level, its dataset sections, metric and processor."""

    def dataset_dir(section: str) -> str:
        return str(((raw.get(section) or {}).get("data_loader") or {}).get("dataset_dir") or "")

    tokenizer = (raw.get("processor") or {}).get("tokenizer") or {}
    metric = raw.get("metric") or {}
    return RunConfig(
        run_mode=raw.get("run_mode"),
        load_checkpoint=str(raw.get("load_checkpoint") or ""),
        output_dir=str(raw.get("output_dir") or "./output"),
        train_dataset_dir=dataset_dir("train_dataset"),
        eval_dataset_dir=dataset_dir("eval_dataset"),
        use_parallel=bool(raw.get("use_parallel", False)),
        resume_training=bool(raw.get("resume_training", False)),
        auto_trans_ckpt=bool(raw.get("auto_trans_ckpt", False)),
        src_strategy_path_or_dir=str(raw.get("src_strategy_path_or_dir") or ""),
        do_eval=bool(raw.get("do_eval", False)),
        eval_step_interval=_take(raw, "eval_step_interval", 100, int, source),
        eval_epoch_interval=_take(raw, "eval_epoch_interval", -1, int, source),
        metric=str(metric.get("type", "PerplexityMetric") if isinstance(metric, dict) else metric),
        vocab_file=str(tokenizer.get("vocab_file") or ""),
    )


def _optimizer(raw: dict, source: str) -> OptimizerConfig:
    opt_raw = dict(raw.get("optimizer") or {})
    optimizer = OptimizerConfig(
        type=str(opt_raw.get("type", "AdamWeightDecay")),
        **{
            k: _take(opt_raw, k, getattr(OptimizerConfig, k), float, f"{source}: optimizer")
            for k in ("learning_rate", "beta1", "beta2", "eps", "weight_decay")
        },
    )
    if optimizer.type not in OPTIMIZERS:
        raise MindsftError(
            f"{source}: optimizer.type {optimizer.type!r} is unknown (supported: "
            f"{list(OPTIMIZERS)})"
        )
    return optimizer


def _schedule(raw: dict, optimizer: OptimizerConfig, source: str) -> ScheduleConfig:
    """`lr_schedule`, or the optimizer's constant learning rate without one."""
    sched_raw = dict(
        raw.get("lr_schedule")
        or {"type": "ConstantWarmUpLR", "learning_rate": optimizer.learning_rate}
    )
    where = f"{source}: lr_schedule"
    schedule = ScheduleConfig(
        type=str(sched_raw.get("type", "CosineWithWarmUpLR")),
        learning_rate=_take(sched_raw, "learning_rate", optimizer.learning_rate, float, where),
        warmup_steps=_take(sched_raw, "warmup_steps", 0, int, where) or 0,
        warmup_ratio=_take(sched_raw, "warmup_ratio", None, float, where),
        warmup_lr_init=_take(sched_raw, "warmup_lr_init", 0.0, float, where),
        lr_end=_take(sched_raw, "lr_end", 0.0, float, where),
        total_steps=_take(sched_raw, "total_steps", -1, int, where) or -1,
    )
    if schedule.type not in SCHEDULES:
        raise MindsftError(
            f"{source}: lr_schedule.type {schedule.type!r} is unknown (supported: "
            f"{list(SCHEDULES)})"
        )
    return schedule


def _unsupported(raw: dict, flat_callbacks: dict, model_config: dict) -> list:
    """'key=value' for every result-changing key mindsft does not implement."""
    implemented = {
        "seed",
        "eval_step_interval",
        "eval_epoch_interval",
        "model.model_config.pet_config",
        "runner_config.epochs",
        "runner_config.batch_size",
        "runner_config.gradient_accumulation_steps",
        "train_dataset.data_loader.shuffle",
        "train_dataset.drop_remainder",
        "runner_wrapper.max_grad_norm",
        "runner_wrapper.use_clip_grad",
        "callbacks.CheckpointMonitor.prefix",
        "callbacks.CheckpointMonitor.save_checkpoint_steps",
        "callbacks.CheckpointMonitor.keep_checkpoint_max",
        "tensorboard",
        "optimizer.type",
        *(f"optimizer.{k}" for k in raw.get("optimizer") or {}),
        *(f"lr_schedule.{k}" for k in ScheduleConfig.__dataclass_fields__),
    }
    unsupported = []
    flat = dict(_flatten({k: v for k, v in raw.items() if k != "callbacks"}))
    flat.update(flat_callbacks)
    for path, value in flat.items():
        if _covered(path, implemented):
            continue
        if path in NEUTRAL:
            if NEUTRAL[path] is not None and value != NEUTRAL[path]:
                unsupported.append(f"{path}={value!r}")
            continue
        if not _covered(path, NO_EFFECT):
            unsupported.append(f"{path}={value!r}")
    if (raw.get("train_dataset") or {}).get("drop_remainder") is False:
        unsupported.append("train_dataset.drop_remainder=False")
    for key, neutral in MODEL_NEUTRAL.items():
        if key in model_config and model_config[key] != neutral:
            unsupported.append(f"model.model_config.{key}={model_config[key]!r}")
    return unsupported


def parse_finetune_config(raw: dict, source: str = "<dict>") -> FinetuneConfig:
    """Turn a MindFormers finetune YAML (already loaded) into a FinetuneConfig."""
    model_config, lora = _model(raw, source)
    train, flat_callbacks = _train(raw, source)
    optimizer = _optimizer(raw, source)
    schedule = _schedule(raw, optimizer, source)
    unsupported = _unsupported(raw, flat_callbacks, model_config)
    return FinetuneConfig(
        model_config,
        train,
        optimizer,
        schedule,
        lora,
        unsupported,
        str(source),
        run=_run(raw, source),
        tensorboard=TensorBoardConfig.from_yaml(raw.get("tensorboard"), source),
    )


def load_finetune_config(path) -> FinetuneConfig:
    """Read a MindFormers finetune YAML file."""
    return parse_finetune_config(read_yaml(path), str(Path(path)))

"""MindFormers-shaped finetune YAML -> dataclasses.

Reads `finetune_llama2_7b.yaml` / `lora_llama2_7b.yaml` as MindFormers ships
them: the tree is validated first (mindsft.train.config_keys: every key read,
known to have no effect, or reported by name in `FinetuneConfig.unsupported`),
then read into one dataclass per section.
"""

from dataclasses import dataclass, field
from pathlib import Path

from mindsft.errors import MindsftError
from mindsft.files import read_yaml
from mindsft.pet.config import LoraConfig
from mindsft.train.config_keys import RECOMPUTE_DEFAULTS, section, unsupported_keys, validate
from mindsft.train.tensorboard import TensorBoardConfig

OPTIMIZERS = ("AdamWeightDecay", "FP32StateAdamWeightDecay", "AdamW")
SCHEDULES = ("CosineWithWarmUpLR", "ConstantWarmUpLR", "constant_with_warmup")


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


def _checkpointing(tree: dict, train: TrainConfig) -> None:
    """CheckpointMonitor's prefix, save interval and how many to keep."""
    monitor = section(tree, "callbacks.CheckpointMonitor")
    train.prefix = str(monitor.get("prefix", train.prefix))
    train.save_checkpoint_steps = monitor.get("save_checkpoint_steps", 100)
    train.keep_checkpoint_max = monitor.get("keep_checkpoint_max", 5)


def _model(tree: dict, source: str) -> tuple:
    """(model_config without pet_config, LoraConfig or None) from `model.model_config`."""
    model_block = section(tree, "model").get("model_config")
    if not isinstance(model_block, dict):
        raise MindsftError(f"{source}: model.model_config is missing")
    model_config = {k: v for k, v in model_block.items() if k != "pet_config"}
    pet = model_block.get("pet_config")
    return model_config, LoraConfig.from_pet_config(pet) if pet else None


def _train(tree: dict) -> TrainConfig:
    """TrainConfig from runner_config, train_dataset, runner_wrapper, context and
    callbacks (validated)."""
    runner, wrapper = section(tree, "runner_config"), section(tree, "runner_wrapper")
    dataset = section(tree, "train_dataset")
    train = TrainConfig(
        seed=tree.get("seed", 0),
        epochs=runner.get("epochs", 1),
        batch_size=runner.get("batch_size", dataset.get("batch_size", 1)),
        gradient_accumulation_steps=runner.get("gradient_accumulation_steps", 1),
        max_grad_norm=(
            float(wrapper.get("max_grad_norm", 1.0)) if wrapper.get("use_clip_grad") else None
        ),
        shuffle=section(tree, "train_dataset.data_loader").get("shuffle", True),
        jit=section(tree, "context").get("mode", 0) == 0,
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
        train_dataset_dir=section(tree, "train_dataset.data_loader").get("dataset_dir") or "",
        eval_dataset_dir=section(tree, "eval_dataset.data_loader").get("dataset_dir") or "",
        use_parallel=tree.get("use_parallel", False),
        resume_training=tree.get("resume_training", False),
        auto_trans_ckpt=tree.get("auto_trans_ckpt", False),
        src_strategy_path_or_dir=tree.get("src_strategy_path_or_dir") or "",
        do_eval=tree.get("do_eval", False),
        eval_step_interval=tree.get("eval_step_interval", 100),
        eval_epoch_interval=tree.get("eval_epoch_interval", -1),
        metric=metric.get("type", "PerplexityMetric") if isinstance(metric, dict) else metric,
        vocab_file=section(tree, "processor.tokenizer").get("vocab_file") or "",
    )


def _recompute(tree: dict) -> tuple:
    """(recompute, 'key=value' of the finer settings not implemented) from
    `recompute_config` (validated)."""
    block = section(tree, "recompute_config")
    skipped = [
        f"recompute_config.{key}={value!r}"
        for key, value in block.items()
        if key != "recompute" and value != RECOMPUTE_DEFAULTS.get(key)
    ]
    return block.get("recompute", False), skipped


def _optimizer(tree: dict, source: str) -> OptimizerConfig:
    opt_raw = section(tree, "optimizer")
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
    sched_raw = section(tree, "lr_schedule") or {
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


def parse_finetune_config(raw: dict, source: str = "<dict>") -> FinetuneConfig:
    """Turn a MindFormers finetune YAML (already loaded) into a FinetuneConfig."""
    tree = validate(raw, source)
    model_config, lora = _model(tree, source)
    train = _train(tree)
    optimizer = _optimizer(tree, source)
    schedule = _schedule(tree, optimizer, source)
    unsupported = unsupported_keys(tree, model_config)
    parallel = section(tree, "parallel_config")
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

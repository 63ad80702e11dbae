"""A memory plan for a finetune YAML: the step as mindsft would run it, its
breakdown and verdict, and the same step under the settings that change memory
(recompute, MindSpore's parallel optimizer, MindFormers' flash attention)."""

from dataclasses import dataclass, field

from mindsft.errors import MindsftError
from mindsft.files import read_yaml
from mindsft.models.config import LlamaConfig
from mindsft.plan.fit import largest_batch, largest_seq
from mindsft.plan.memory import Breakdown, Step, backend_for, plan_step
from mindsft.plan.settings import RunSettings, read_settings
from mindsft.plan.units import parse_size
from mindsft.train.config import FinetuneConfig, parse_finetune_config

# model_config keys that decide shapes: each must be a positive integer when given
SHAPE_KEYS = (
    "hidden_size",
    "num_layers",
    "num_heads",
    "n_kv_heads",
    "vocab_size",
    "intermediate_size",
    "multiple_of",
    "seq_length",
)


@dataclass
class Scenario:
    """One way to run the step, and what it takes per device."""

    name: str
    step: Step
    breakdown: Breakdown
    fits: bool | None = None
    """None when no device memory is known."""
    largest_batch: int | None = None
    largest_seq: int | None = None


@dataclass
class Plan:
    """Everything `mindsft plan` prints and writes."""

    source: str
    finetune: FinetuneConfig
    settings: RunSettings
    devices: int
    device_memory: int | None
    scenarios: list = field(default_factory=list)
    """The first is the step as mindsft runs it (the verdict)."""
    notes: list = field(default_factory=list)
    """Memory-relevant YAML settings mindsft does not implement."""

    @property
    def verdict(self) -> Scenario:
        return self.scenarios[0]


def check_model_types(mc: dict, where: str) -> None:
    """Each shape key of `model.model_config` a positive integer (one line otherwise)."""
    for key in SHAPE_KEYS:
        value = mc.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise MindsftError(f"{where}.{key}: expected a positive integer, got {value!r}")
    ffn = mc.get("ffn_dim_multiplier")
    if ffn is not None and (isinstance(ffn, bool) or not isinstance(ffn, (int, float))):
        raise MindsftError(f"{where}.ffn_dim_multiplier: expected a number, got {ffn!r}")


def _positive(value, what: str) -> int:
    if value is not None and value < 1:
        raise MindsftError(f"{what}: must be at least 1, got {value}")
    return value


def base_step(finetune: FinetuneConfig, settings: RunSettings, source: str, **overrides) -> Step:
    """The step the YAML describes, with command-line overrides (None: keep)."""
    where = f"{source}: model.model_config"
    check_model_types(finetune.model_config, where)
    config = LlamaConfig.from_mindformers(finetune.model_config, where=where)
    seq = _positive(overrides.get("seq_length"), "--seq_length") or config.seq_length
    batch = _positive(overrides.get("batch_size"), "--batch_size") or finetune.train.batch_size
    recompute = overrides.get("recompute")
    target = overrides.get("device_target") or settings.device_target
    return Step(
        config,
        finetune.lora,
        batch_size=_positive(batch, f"{source}: runner_config.batch_size"),
        seq_length=seq,
        recompute=finetune.recompute if recompute is None else recompute,
        accumulation=finetune.train.gradient_accumulation_steps,
        shard_threshold=settings.parallel_optimizer_threshold,
        backend=backend_for(target),
    )


def _scenarios(step: Step, devices: int) -> list:
    """(name, step): the step as mindsft runs it first, then its variants."""
    flip = not step.recompute
    other = "with recompute" if flip else "without recompute"
    named = [
        ("data parallel (mindsft)", step),
        (f"data parallel, {other}", step.with_(recompute=flip)),
    ]
    if devices > 1:
        sharding = f"optimizer sharding over {devices} devices"
        shard = step.with_(shard=devices)
        named += [(sharding, shard), (f"{sharding}, {other}", shard.with_(recompute=flip))]
    return named


def yaml_notes(finetune: FinetuneConfig, settings: RunSettings) -> list:
    """What the YAML asks for that changes memory and mindsft does not do."""
    notes = []
    if settings.parallel_optimizer:
        notes.append("parallel.enable_parallel_optimizer=True (MindSpore's optimizer sharding)")
    if finetune.model_config.get("use_flash_attention"):
        notes.append("model_config.use_flash_attention=True (no (B, H, T, T) tensors)")
    return notes + finetune.recompute_not_implemented


def make_plan(path, devices=None, device_memory=None, **overrides) -> Plan:
    """The plan of the finetune YAML at `path`; `devices`, `device_memory` and the
    overrides (seq_length, batch_size, recompute, device_target) replace what the
    YAML says."""
    raw = read_yaml(path)
    finetune = parse_finetune_config(raw, str(path))
    return plan_config(finetune, read_settings(raw, path), devices, device_memory, **overrides)


def plan_config(
    finetune: FinetuneConfig, settings: RunSettings, devices=None, device_memory=None, **overrides
) -> Plan:
    """The plan of a parsed finetune config (its `source` names it) and the YAML's
    RunSettings, with the same overrides as `make_plan`."""
    source = finetune.source
    devices = _positive(devices, "--devices") or settings.data_parallel
    budget = settings.device_memory
    if device_memory is not None:
        budget = parse_size(device_memory, "--device_memory")
    step = base_step(finetune, settings, source, **overrides)
    plan = Plan(source, finetune, settings, devices, budget, notes=yaml_notes(finetune, settings))
    for name, variant in _scenarios(step, devices):
        scenario = Scenario(name, variant, plan_step(variant))
        if budget is not None:
            scenario.fits = scenario.breakdown.total <= budget
            scenario.largest_batch = largest_batch(variant, budget)
            scenario.largest_seq = largest_seq(variant, budget)
        plan.scenarios.append(scenario)
    return plan

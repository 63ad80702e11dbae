"""What a plan reads from a finetune YAML besides what the trainer reads
(`train.config`: the model, the batch, recompute): MindFormers' `parallel` (its
parallel optimizer), `parallel_config.data_parallel` and `context` (device target
and `max_device_memory`). Types are checked here; each wrong one is one line."""

from dataclasses import dataclass

from mindsft.errors import MindsftError
from mindsft.plan.units import parse_size

PARALLEL_OPTIMIZER_THRESHOLD_KB = 64  # MindSpore's default parallel_optimizer_threshold


@dataclass(frozen=True)
class RunSettings:
    """Launch settings that decide memory, as the YAML declares them."""

    parallel_optimizer: bool = False
    """parallel.enable_parallel_optimizer (MindFormers; mindsft does not shard)."""
    parallel_optimizer_threshold: int = PARALLEL_OPTIMIZER_THRESHOLD_KB * 1024
    """Parameters smaller than this many bytes are not sharded."""
    data_parallel: int = 1
    """parallel_config.data_parallel."""
    device_target: str = "Ascend"
    """context.device_target."""
    device_memory: int | None = None
    """context.max_device_memory in bytes, None when absent."""


def _section(raw: dict, key: str, source) -> dict:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MindsftError(f"{source}: {key} must be a mapping, got {value!r}")
    return value


def _typed(block: dict, key: str, default, types, where: str, expect: str):
    """block[key] (default when absent or null) if it is one of `types`; booleans
    count as integers only where bool is among them."""
    value = block.get(key, default)
    if value is None:
        return default
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise MindsftError(f"{where}.{key}: expected {expect}, got {value!r}")
    return value


def read_settings(raw: dict, source) -> RunSettings:
    """RunSettings from a loaded finetune YAML (`source` names it in errors)."""
    parallel = _section(raw, "parallel", source)
    where = f"{source}: parallel"
    sharded = _typed(parallel, "enable_parallel_optimizer", False, (bool,), where, "True or False")
    po_config = _section(parallel, "parallel_optimizer_config", f"{source}: parallel")
    threshold = _typed(
        po_config,
        "parallel_optimizer_threshold",
        PARALLEL_OPTIMIZER_THRESHOLD_KB,
        (int,),
        f"{where}.parallel_optimizer_config",
        "a size in KB",
    )
    dp = _typed(
        _section(raw, "parallel_config", source),
        "data_parallel",
        1,
        (int,),
        f"{source}: parallel_config",
        "a positive integer",
    )
    if dp < 1:
        raise MindsftError(
            f"{source}: parallel_config.data_parallel: expected a positive integer, got {dp}"
        )
    context = _section(raw, "context", source)
    target = _typed(context, "device_target", "Ascend", (str,), f"{source}: context", "a name")
    memory = context.get("max_device_memory")
    if memory is not None:
        memory = parse_size(memory, f"{source}: context.max_device_memory")
    return RunSettings(
        parallel_optimizer=sharded,
        parallel_optimizer_threshold=threshold * 1024,
        data_parallel=dp,
        device_target=target,
        device_memory=memory,
    )

"""The plan at launch: every training run (`finetune`, `run --run_mode
train/finetune`) plans its step before building the model, rank 0 prints the
plan, and a run whose device memory is declared (`--device_memory` or the YAML's
`context.max_device_memory`) refuses to start when the plan says it does not fit,
unless `--check_memory False`.

The plan is made for the device this MindSpore runs on, whatever the YAML's
`context.device_target` says: on the CPU the declared memory is compared with the
CPU plan (what the process's resident memory will reach)."""

from pathlib import Path

from mindsft.errors import MindsftError
from mindsft.files import read_yaml
from mindsft.plan.planner import Plan, plan_config
from mindsft.plan.report import format_short
from mindsft.plan.settings import RunSettings, read_settings
from mindsft.plan.units import format_size
from mindsft.train.config import FinetuneConfig


def yaml_settings(cfg: FinetuneConfig) -> RunSettings:
    """The RunSettings of the YAML `cfg` was read from (defaults without a file)."""
    path = Path(cfg.source)
    return read_settings(read_yaml(path), path) if path.is_file() else RunSettings()


def launch_plan(cfg: FinetuneConfig, devices: int, device_target: str) -> Plan:
    """The plan of the run as it will start: `cfg` after command-line overrides,
    `devices` data-parallel workers, on `device_target`."""
    memory = cfg.run.device_memory or None
    return plan_config(cfg, yaml_settings(cfg), devices, memory, device_target=device_target)


def check_launch(cfg: FinetuneConfig, devices: int, device_target: str, rank: int, say) -> Plan:
    """Plan the run, print the plan on rank 0 and refuse (every rank) a run that does
    not fit the declared device memory, unless cfg.run.check_memory is False."""
    plan = launch_plan(cfg, devices, device_target)
    if rank == 0:
        say(format_short(plan))
    verdict = plan.verdict
    if plan.device_memory is None or verdict.fits:
        return plan
    flag = "--device_memory" if cfg.run.device_memory else "context.max_device_memory"
    message = (
        f"{cfg.source}: does not fit: the memory plan needs "
        f"{format_size(verdict.breakdown.total)} per device, {format_size(plan.device_memory)} "
        f"available ({flag}, {verdict.step.backend.name} plan)"
    )
    fixes = [s.name for s in plan.scenarios[1:] if s.fits]
    if fixes:
        message += f"; it would fit with: {'; '.join(fixes)}"
    if cfg.run.check_memory:
        raise MindsftError(message + "; --check_memory False starts it anyway")
    if rank == 0:
        say(f"{message}; starting anyway (--check_memory False)")
    return plan

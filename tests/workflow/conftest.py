"""Run the real workflow (the Snakemake CLI of the project's venv) in a
temporary working directory, with a config derived from config/config.yaml."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")


def env() -> dict:
    """The venv's bin first on PATH (as `make` does), offline hub."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
    }


def offline_prefix() -> list:
    """`unshare -n` (a network namespace with no interfaces) where it works, so
    a command that reaches for the network fails instead of hanging."""
    probe = shutil.which("unshare") and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True, check=False
    )
    return ["unshare", "-n"] if probe and probe.returncode == 0 else []


def write_config(workdir: Path, edit=None) -> Path:
    """config/config.yaml, optionally changed by `edit(config)`, in `workdir`."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    if edit:
        edit(config)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args, check=True, offline=False, timeout=900, extra_env=None):
    """Run snakemake on the project's Snakefile in `workdir`; return the result."""
    cmd = [
        *(offline_prefix() if offline else []),
        SNAKEMAKE,
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        f"--configfile={workdir / 'config.yaml'}",
        *args,
    ]
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**env(), **(extra_env or {})},
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout[-3000:]}"
            f"\n{result.stderr[-6000:]}"
        )
    return result


def planned_jobs(workdir: Path, *targets) -> dict:
    """{rule: count} of the jobs a dry run would execute ({} when up to date)."""
    out = snakemake(workdir, "-n", *targets, "--quiet", "rules").stdout
    jobs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            jobs[parts[0]] = int(parts[1])
    return jobs

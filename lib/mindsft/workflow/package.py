"""results/{run}/ckpt: the merged checkpoint a user takes away, the resolved
finetune YAML it was trained with, its tokenizer, and manifest.json."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError
from mindsft.workflow.provenance import write_manifest

STEP = re.compile(r"-(\d+)_(\d+)\.ckpt$")


def newest_checkpoint(rank_dir) -> Path:
    """The last checkpoint in a rank_i folder, by (epoch, step) in its name."""
    ckpts = sorted(Path(rank_dir).glob("*.ckpt"),
                   key=lambda p: tuple(map(int, STEP.search(p.name).groups()))
                   if STEP.search(p.name) else (-1, -1))
    if not ckpts:
        raise MindsftError(f"{rank_dir}: no checkpoint")
    return ckpts[-1]


def pet_type(config) -> str:
    """`lora` when the finetune YAML has a LoRA pet_config, else `full`."""
    tree = yaml.safe_load(Path(config).read_text())
    pet = (tree.get("model", {}).get("model_config", {}) or {}).get("pet_config") or {}
    return str(pet.get("pet_type", "full")).lower()


def take_rank0(base_checkpoint, train_dir, out) -> None:
    """A full-parameter run's result: rank 0's last weights, with only the base
    checkpoint's parameters (no optimizer state), after checking every rank
    holds the same weights (data parallel keeps replicas identical)."""
    import mindspore as ms
    import numpy as np

    base_names = list(ms.load_checkpoint(str(base_checkpoint)).keys())
    ranks = sorted(Path(train_dir, "checkpoint").glob("rank_*"))
    if not ranks:
        raise MindsftError(f"{train_dir}/checkpoint: no rank_* folder")
    states = [ms.load_checkpoint(str(newest_checkpoint(r))) for r in ranks]
    missing = [n for n in base_names if n not in states[0]]
    if missing:
        raise MindsftError(f"{newest_checkpoint(ranks[0])}: missing parameters {missing[:5]}")
    for rank, state in zip(ranks[1:], states[1:]):
        for name in base_names:
            if not np.array_equal(state[name].asnumpy(), states[0][name].asnumpy()):
                raise MindsftError(f"{rank}: parameter {name} differs from rank 0")
    params = [{"name": n, "data": states[0][n]} for n in base_names]
    ms.save_checkpoint(params, str(out))


def package_run(*, run, train_dir, config, base_checkpoint, tokenizer, out_dir, provenance) -> None:
    """Write results/{run}/ckpt whole: model.ckpt (LoRA merged into the base, or
    rank 0 of a full run), finetune.yaml, tokenizer.model, manifest.json."""
    kind = pet_type(config)
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        model = tmp / "model.ckpt"
        if kind == "lora":
            lora = newest_checkpoint(Path(train_dir, "checkpoint", "rank_0"))
            cmd = [sys.executable, "-m", "mindsft.cli", "merge-lora", "--config", str(config),
                   "--base_checkpoint", str(base_checkpoint), "--lora_checkpoint", str(lora),
                   "--output_path", str(model)]
            print("+", " ".join(cmd), file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True)
        elif kind == "full":
            take_rank0(base_checkpoint, train_dir, model)
        else:
            raise MindsftError(f"{config}: pet_type {kind!r} is not supported (lora or full)")
        shutil.copyfile(config, tmp / "finetune.yaml")
        shutil.copyfile(tokenizer, tmp / "tokenizer.model")
        write_manifest(
            tmp / "manifest.json",
            run=run,
            inputs={"base_checkpoint": base_checkpoint, "tokenizer": tokenizer,
                    "finetune_config": config, **provenance},
            outputs={name: tmp / name for name in ("model.ckpt", "finetune.yaml")},
            extra={"pet_type": kind},
        )

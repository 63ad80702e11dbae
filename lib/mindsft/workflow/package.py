"""results/{run}/ckpt: the merged checkpoint a user takes away, the resolved
finetune YAML it was trained with, its tokenizer, and manifest.json."""

import shutil

from mindsft.atomic import atomic_output
from mindsft.workflow.provenance import write_manifest


def package_run(
    *, run, train_dir, config, base_checkpoint, tokenizer, out_dir, provenance, packing=False
) -> None:
    """Write results/{run}/ckpt whole: model.ckpt (LoRA merged into the base, or
    rank 0's weights of a full run, checked equal on every rank), finetune.yaml,
    tokenizer.model and manifest.json (sha256 of every input and output; `pet_type`,
    and `packing`: whether the run trained on packed rows)."""
    from mindsft.train.config import load_finetune_config
    from mindsft.train.merge import merge_lora_checkpoint

    cfg = load_finetune_config(config)
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        merge_lora_checkpoint(cfg, base_checkpoint, train_dir, tmp / "model.ckpt")
        shutil.copyfile(config, tmp / "finetune.yaml")
        shutil.copyfile(tokenizer, tmp / "tokenizer.model")
        write_manifest(
            tmp / "manifest.json",
            run=run,
            inputs={
                "base_checkpoint": base_checkpoint,
                "tokenizer": tokenizer,
                "finetune_config": config,
                **provenance,
            },
            outputs={name: tmp / name for name in ("model.ckpt", "finetune.yaml")},
            extra={"pet_type": "lora" if cfg.lora else "full", "packing": bool(packing)},
        )

"""The LoRA matrices of a checkpoint, and their check against a finetune YAML's
model and pet_config: what export-adapter and merge-lora both read."""

import re
from pathlib import Path

from mindsft.convert import raw
from mindsft.convert.ckpt import scan_ckpt
from mindsft.convert.names import MODEL_PREFIXES
from mindsft.errors import MindsftError
from mindsft.pet import peft
from mindsft.pet.config import LORA_A, LORA_B, is_lora_param


def lora_tensors(ckpt: Path) -> dict:
    """{module path: {LORA_A: FileTensor, LORA_B: FileTensor}} of a checkpoint's LoRA
    matrices (training state and base weights left out); a lone A or B is an error."""
    modules = {}
    for t in scan_ckpt(ckpt):
        if t.name.startswith(MODEL_PREFIXES) and is_lora_param(t.name):
            module, _, matrix = t.name.rpartition(".")
            modules.setdefault(module, {})[matrix] = t
    if not modules:
        raise MindsftError(f"{ckpt}: holds no LoRA matrices ({LORA_A}/{LORA_B})")
    for module, pair in modules.items():
        for matrix in (LORA_A, LORA_B):
            if matrix not in pair:
                raise MindsftError(f"{ckpt}: {module} has no {matrix} beside its other matrix")
        if pair[LORA_A].dtype not in raw.FLOATS or pair[LORA_B].dtype not in raw.FLOATS:
            raise MindsftError(f"{ckpt}: {module}'s LoRA matrices are not floating point")
    return modules


def check_against_config(modules: dict, config, lora, ckpt, source) -> list:
    """The checkpoint's LoRA modules must be those `lora.target_modules` selects in a
    Llama of `config`, of rank `lora.lora_rank` and shaped for it; returns them in order."""
    linear = peft.linear_modules(config)
    selected = peft.select_mindformers(lora.target_modules, linear)
    if not selected:
        shown = sorted({re.sub(r"\.\d+\.", ".N.", m) for m in linear})
        raise MindsftError(
            f"{source}: pet_config.target_modules {lora.target_modules!r} matches no module "
            f"of the model; modules: {shown}"
        )
    unknown = sorted(set(modules) - set(linear))
    if unknown:
        raise MindsftError(f"{ckpt}: LoRA on {unknown[0]}, which a Llama of {source} lacks")
    extra = sorted(set(modules) - set(selected))
    missing = sorted(set(selected) - set(modules))
    if extra or missing:
        what = f"has LoRA on {extra[0]}, which" if extra else f"has no LoRA on {missing[0]}, which"
        raise MindsftError(
            f"{ckpt}: {what} {source}'s pet_config.target_modules {lora.target_modules!r} "
            + ("does not select" if extra else "selects")
        )
    for module in selected:
        out_in = linear[module][1]
        a, b = modules[module][LORA_A], modules[module][LORA_B]
        want = ((lora.lora_rank, out_in[1]), (out_in[0], lora.lora_rank))
        if (tuple(a.shape), tuple(b.shape)) != want:
            raise MindsftError(
                f"{ckpt}: {module} has A {list(a.shape)} and B {list(b.shape)}; {source} "
                f"(lora_rank {lora.lora_rank}) needs A {list(want[0])} and B {list(want[1])}"
            )
    return selected

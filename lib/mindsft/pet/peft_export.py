"""`mindsft export-adapter`: a mindsft LoRA checkpoint -> a PEFT adapter folder
(adapter_model.safetensors + adapter_config.json) that PeftModel, transformers
and vLLM load. Only the LoRA matrices go in, copied bit for bit."""

import json
from pathlib import Path

from mindsft.atomic import atomic_output
from mindsft.convert import raw
from mindsft.convert.safetensors_io import write_safetensors
from mindsft.errors import MindsftError
from mindsft.files import read_yaml
from mindsft.models.config import LlamaConfig
from mindsft.pet import peft
from mindsft.pet.config import LORA_A, LORA_B, LoraConfig
from mindsft.pet.lora_checkpoint import check_against_config, lora_tensors
from mindsft.train.merge import resolve_checkpoint


def read_lora_yaml(path) -> tuple:
    """(LlamaConfig, LoraConfig) of a finetune YAML; a YAML without pet_config is an error."""
    model_config = (read_yaml(path).get("model") or {}).get("model_config")
    if not isinstance(model_config, dict):
        raise MindsftError(f"{path}: model.model_config is missing")
    pet = model_config.get("pet_config")
    if not pet:
        raise MindsftError(f"{path}: model.model_config.pet_config is missing (not a LoRA config)")
    try:
        lora = LoraConfig.from_pet_config(pet)
    except MindsftError as exc:
        raise MindsftError(f"{path}: {exc}") from None
    config = LlamaConfig.from_mindformers(model_config, where=f"{path}: model.model_config")
    return config, lora


def write_adapter(output_dir, tensors: list, config: dict) -> None:
    """Write the adapter folder atomically: it appears whole or not at all. An
    existing folder is replaced only if it is an adapter folder itself."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not (output_dir / peft.CONFIG).is_file():
        if not output_dir.is_dir() or any(output_dir.iterdir()):
            raise MindsftError(
                f"{output_dir}: exists and is not an adapter folder; not replacing it"
            )
    try:
        with atomic_output(output_dir) as tmp:
            tmp.mkdir()
            write_safetensors(tmp / peft.WEIGHTS, tensors, metadata={"format": "pt"})
            (tmp / peft.CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise MindsftError(f"{output_dir}: cannot write ({exc.strerror})") from None


def export_adapter(config_path, lora_checkpoint, output_dir, base_model_name_or_path=None) -> dict:
    """Write the LoRA matrices of `lora_checkpoint` (a file or a run folder) as a PEFT
    adapter in `output_dir`, after checking them against the YAML's pet_config.
    Returns the adapter_config written."""
    config, lora = read_lora_yaml(config_path)
    ckpt = resolve_checkpoint(lora_checkpoint)
    modules = lora_tensors(ckpt)
    selected = check_against_config(modules, config, lora, ckpt, config_path)
    tensors = [
        raw.CastTensor(modules[m][matrix], peft.peft_key(m, matrix), modules[m][matrix].dtype)
        for m in selected
        for matrix in (LORA_A, LORA_B)
    ]
    targets = peft.peft_target_modules(selected, config.num_layers)
    adapter = peft.adapter_config(
        lora.lora_rank, lora.lora_alpha, lora.lora_dropout, targets, base_model_name_or_path
    )
    write_adapter(output_dir, tensors, adapter)
    return adapter

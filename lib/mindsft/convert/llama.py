"""Streaming Llama weight conversion, HF folder <-> MindSpore checkpoint.

Every tensor's name and shape is checked against config.json before anything
is written; then tensors are copied one at a time, in chunks, converting the
element type on the way, so memory stays near one chunk whatever the model size.
"""

import json
import shutil
from pathlib import Path

from mindsft.atomic import atomic_output
from mindsft.convert import hf_folder, names, raw, safetensors_io
from mindsft.convert.ckpt import CkptWriter, scan_ckpt
from mindsft.errors import MindsftError
from mindsft.files import read_json
from mindsft.progress import progress_bar

SIDECAR_SUFFIX = ".config.json"  # `OUT.ckpt.config.json`: the HF config a checkpoint came from
HF_SHARD_BYTES = 5 * 1024**3  # transformers' save_pretrained default max_shard_size
_TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def sidecar_path(ckpt) -> Path:
    return Path(f"{ckpt}{SIDECAR_SUFFIX}")


def check_config(config: dict, where) -> dict:
    """An HF config of a Llama, with the fields the shapes depend on."""
    hf_folder.check_config_fields(config, where)
    if config.get("model_type", "llama") != "llama":
        raise MindsftError(f"{where}: model_type {config['model_type']!r} is not llama")
    return config


def expected_shapes(config: dict) -> dict:
    """HF tensor name -> shape for a Llama with this config.json."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    inter, vocab = config["intermediate_size"], config["vocab_size"]
    per_layer = {
        "self_attn.q_proj.weight": (heads * head_dim, hidden),
        "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
        "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
        "self_attn.o_proj.weight": (hidden, heads * head_dim),
        "mlp.gate_proj.weight": (inter, hidden),
        "mlp.up_proj.weight": (inter, hidden),
        "mlp.down_proj.weight": (hidden, inter),
        "input_layernorm.weight": (hidden,),
        "post_attention_layernorm.weight": (hidden,),
    }
    shapes = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(config["num_hidden_layers"]):
        shapes.update({f"model.layers.{i}.{k}": v for k, v in per_layer.items()})
    shapes["model.norm.weight"] = (hidden,)
    if not config.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = (vocab, hidden)
    return shapes


def _check_tensors(found: dict, config: dict, where, config_where) -> None:
    """`found` maps HF names to (file, shape); every name and shape must fit the config."""
    shapes = expected_shapes(config)
    for name, (path, shape) in found.items():
        if name not in shapes:
            raise MindsftError(
                f"{path}: tensor {name!r} does not belong to a Llama with "
                f"{config['num_hidden_layers']} layers, tie_word_embeddings="
                f"{config.get('tie_word_embeddings', False)} ({config_where})"
            )
        if tuple(shape) != shapes[name]:
            raise MindsftError(
                f"{path}: tensor {name!r} has shape {list(shape)}, {config_where} expects "
                f"{list(shapes[name])}"
            )
    missing = [n for n in shapes if n not in found]
    if missing:
        raise MindsftError(
            f"{where}: tensor {missing[0]!r} is missing ({len(missing)} missing in all)"
        )


def _in_order(plan, config, hf_name, source=lambda t: ""):
    """Tensors in the canonical Llama order (embedding, layers in turn, norm, head),
    source file by source file (so one .bin file is open at a time)."""
    order = {name: i for i, name in enumerate(expected_shapes(config))}
    files = list(dict.fromkeys(source(t) for t in plan))
    return sorted(plan, key=lambda t: (files.index(source(t)), order[hf_name(t)]))


def convert_hf_to_ms(input_dir, output_path, dtype: str = "fp32") -> dict:
    """HF Llama folder -> MindSpore checkpoint with MindFormers' names; `dtype` is
    fp32|fp16|bf16. Also writes the HF config beside it (`OUT.ckpt.config.json`),
    for --reversed. Returns a summary."""
    dst = raw.dtype_code(dtype)
    input_dir = Path(input_dir)
    config_path = hf_folder.config_file(input_dir)
    config = check_config(read_json(config_path), config_path)
    pieces = hf_folder.tokenizer_vocab_size(input_dir)
    if pieces is not None and pieces != config["vocab_size"]:
        raise MindsftError(
            f"{config_path}: vocab_size {config['vocab_size']} differs from the "
            f"{pieces} pieces of {input_dir / 'tokenizer.model'}"
        )
    tied = config.get("tie_word_embeddings", False)
    plan, found, skipped = [], {}, []
    for t in hf_folder.list_tensors(input_dir):
        try:
            ms_name = names.hf_to_ms(t.name)
        except MindsftError as exc:
            raise MindsftError(f"{t.path}: {exc}") from None
        if ms_name is None or (tied and t.name == "lm_head.weight"):
            skipped.append(t.name)
            continue
        if t.dtype not in raw.FLOATS:
            raise MindsftError(f"{t.path}: tensor {t.name!r} is {t.dtype}, not a float type")
        found[t.name] = (t.path, t.shape)
        plan.append(raw.CastTensor(t, ms_name, dst))
    _check_tensors(found, config, input_dir, config_path)
    plan = _in_order(plan, config, lambda t: t.src.name, source=lambda t: t.src.path)
    sidecar = dict(config, torch_dtype=_TORCH_DTYPE[dst])
    with (
        CkptWriter(output_path, suffixes=(SIDECAR_SUFFIX,)) as writer,
        progress_bar(len(plan), desc="convert-weight", unit="tensor") as bar,
    ):
        for t in plan:
            writer.write_raw(t.name, t.dtype, t.shape, t.chunks())
            bar.update(1)
        writer.companion(SIDECAR_SUFFIX).write_text(json.dumps(sidecar, indent=2) + "\n")
    return {"tensors": len(plan), "skipped": skipped, "dtype": dtype}


def _hf_config_for(ckpt: Path, config_path) -> dict:
    """The HF config.json dict for --reversed: from --config (an HF config.json, a
    folder holding one, or a MindFormers YAML) or else the checkpoint's sidecar."""
    if config_path is None:
        side = sidecar_path(ckpt)
        if not side.is_file():
            raise MindsftError(
                f"{ckpt}: --reversed needs --config (config.json or MindFormers YAML); "
                f"no {side.name} beside the checkpoint"
            )
        return check_config(read_json(side), side)
    path = hf_folder.config_file(config_path)
    if path.suffix in (".yaml", ".yml"):
        from mindsft.models.config import load_config

        return check_config(load_config(path).to_hf_dict(), path)
    return check_config(read_json(path), path)


def convert_ms_to_hf(ckpt, output_dir, config=None, dtype=None, max_shard_bytes=HF_SHARD_BYTES):
    """MindSpore checkpoint (base or merged; not LoRA) -> HF folder: sharded
    safetensors, index and config.json. `dtype` None keeps the checkpoint's types.
    Training state (optimizer moments, step counters) is left out."""
    ckpt = Path(ckpt)
    hf_config = _hf_config_for(ckpt, config)
    tied = hf_config.get("tie_word_embeddings", False)
    plan, found, skipped = [], {}, []
    for t in scan_ckpt(ckpt):
        if "lora" in t.name:
            raise MindsftError(
                f"{ckpt}: tensor {t.name!r} is a LoRA weight; merge it first (mindsft merge-lora)"
            )
        if not t.name.startswith(names.MODEL_PREFIXES):
            skipped.append(t.name)  # optimizer state, step counters
            continue
        try:
            hf_name = names.ms_to_hf(t.name)
        except MindsftError as exc:
            raise MindsftError(f"{ckpt}: {exc}") from None
        if tied and hf_name == "lm_head.weight":
            skipped.append(t.name)
            continue
        if t.dtype not in raw.FLOATS:
            raise MindsftError(f"{ckpt}: tensor {t.name!r} is {t.dtype}, not a float type")
        found[hf_name] = (ckpt, t.shape)
        plan.append(raw.CastTensor(t, hf_name, raw.dtype_code(dtype) if dtype else t.dtype))
    _check_tensors(found, hf_config, ckpt, "the config")
    plan = _in_order(plan, hf_config, lambda t: t.name)
    out_types = {t.dtype for t in plan}
    if len(out_types) == 1:
        hf_config = dict(hf_config, torch_dtype=_TORCH_DTYPE[out_types.pop()])
    with (
        atomic_output(output_dir) as tmp,
        progress_bar(len(plan), desc="convert-weight", unit="tensor") as bar,
    ):
        tmp.mkdir()
        safetensors_io.write_sharded(tmp, plan, max_shard_bytes, on_tensor=bar.update)
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        if config is not None and Path(config).is_dir():
            tokenizer = Path(config) / "tokenizer.model"
            if tokenizer.is_file():
                shutil.copyfile(tokenizer, tmp / "tokenizer.model")
    return {"tensors": len(plan), "skipped": skipped}

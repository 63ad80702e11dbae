"""PEFT's LoRA adapter format (huggingface/peft) and how it maps onto mindsft's LoRA.

A PEFT adapter folder holds `adapter_model.safetensors` (or `adapter_model.bin`)
and `adapter_config.json`. Its tensors are named by the HF module under
PeftModel's prefix; mindsft (MindFormers/mindpet) names the same matrices
beside the MindFormers weight:

    base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight   (r, in)
    model.layers.0.attention.wq.mindpet_delta_lora_a                 (r, in)
    base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight   (out, r)
    model.layers.0.attention.wq.mindpet_delta_lora_b                 (out, r)

Both add (lora_alpha / r) * B @ A to the weight (PEFT's rsLoRA: lora_alpha /
sqrt(r)). Module names are translated through `mindsft.convert.names`, so this
module adds no name table of its own: the Linear modules are the map's
`*_proj` weights and `lm_head`.
"""

import re

from mindsft.convert.llama import expected_shapes
from mindsft.convert.names import HF_TO_MS, hf_to_ms, ms_to_hf
from mindsft.errors import MindsftError
from mindsft.pet.config import LORA_A, LORA_B

WEIGHTS = "adapter_model.safetensors"
WEIGHTS_BIN = "adapter_model.bin"
CONFIG = "adapter_config.json"
PREFIX = "base_model.model."  # PeftModel wrapping LlamaForCausalLM
MATRIX = {LORA_A: "lora_A", LORA_B: "lora_B"}
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.(?P<matrix>lora_[AB])\.weight$")
_LAYER = re.compile(r"\.layers\.(\d+)\.")

# HF short name -> MindFormers short name of every Linear module of a Llama
LINEAR = {
    **{
        hf.split(".")[-2]: ms.split(".")[-2]
        for hf, ms in HF_TO_MS.items()
        if ms is not None and hf.endswith("_proj.weight")
    },
    "lm_head": "lm_head",
}
OUTPUT_LAYER = "lm_head"  # what PEFT's target_modules="all-linear" leaves out

# adapter_config.json as peft 0.21.2's LoraConfig.save_pretrained writes it for a
# plain LoRA; `adapter_config` fills in the values that describe the adapter
FORMAT_VERSION = "0.21.2"
DEFAULTS = {
    "alora_invocation_tokens": None,
    "alpha_pattern": {},
    "arrow_config": None,
    "auto_mapping": None,
    "base_model_name_or_path": None,
    "bias": "none",
    "corda_config": None,
    "ensure_weight_tying": False,
    "eva_config": None,
    "exclude_modules": None,
    "fan_in_fan_out": False,
    "inference_mode": True,
    "init_lora_weights": True,
    "kasa_config": None,
    "layer_replication": None,
    "layers_pattern": None,
    "layers_to_transform": None,
    "loftq_config": {},
    "lora_alpha": 8,
    "lora_bias": False,
    "lora_dropout": 0.0,
    "lora_ga_config": None,
    "megatron_config": None,
    "megatron_core": "megatron.core",
    "modules_to_save": None,
    "monteclora_config": None,
    "peft_type": "LORA",
    "peft_version": FORMAT_VERSION,
    "qalora_group_size": 16,
    "r": 8,
    "rank_pattern": {},
    "revision": None,
    "target_modules": None,
    "target_parameters": None,
    "task_type": "CAUSAL_LM",
    "trainable_token_indices": None,
    "use_bdlora": None,
    "use_dora": False,
    "use_qalora": False,
    "use_rslora": False,
    "velora_config": None,
}


def adapter_config(r: int, lora_alpha: float, lora_dropout: float, target_modules, base) -> dict:
    """adapter_config.json of a plain LoRA with these values."""
    alpha = int(lora_alpha) if float(lora_alpha).is_integer() else float(lora_alpha)
    return dict(
        DEFAULTS,
        r=int(r),
        lora_alpha=alpha,
        lora_dropout=float(lora_dropout),
        target_modules=target_modules,
        base_model_name_or_path=base,
    )


def linear_modules(config) -> dict:
    """{MindFormers module path: (HF module path, (out, in))} of every Linear module
    of a Llama with `config` (a LlamaConfig), in the model's order."""
    shapes = expected_shapes(config.to_hf_dict())
    return {
        ms_module(hf): (hf, shapes[f"{hf}.weight"])
        for hf in hf_linear_paths(config.num_layers)
        if f"{hf}.weight" in shapes  # no lm_head when tied to the embedding
    }


def hf_linear_paths(num_layers: int) -> list:
    """HF module paths of every Linear module of a Llama with `num_layers` layers."""
    per_layer = [
        hf.removesuffix(".weight")
        for hf in HF_TO_MS
        if "{}" in hf and hf.removesuffix(".weight").rpartition(".")[2] in LINEAR
    ]
    return [p.format(i) for i in range(num_layers) for p in per_layer] + [OUTPUT_LAYER]


def hf_module(ms_module: str) -> str:
    """`model.layers.0.attention.wq` -> `model.layers.0.self_attn.q_proj`."""
    return ms_to_hf(f"{ms_module}.weight").removesuffix(".weight")


def ms_module(hf_module_path: str) -> str:
    """`model.layers.0.self_attn.q_proj` -> `model.layers.0.attention.wq`; a module
    that is not one of Llama's Linear layers is an error."""
    if hf_module_path.rpartition(".")[2] not in LINEAR:
        raise MindsftError(f"{hf_module_path!r} is not one of Llama's Linear modules")
    return hf_to_ms(f"{hf_module_path}.weight").removesuffix(".weight")


def peft_key(ms_module_path: str, matrix: str) -> str:
    """PEFT's tensor name for mindsft's LORA_A or LORA_B matrix of a module."""
    return f"{PREFIX}{hf_module(ms_module_path)}.{MATRIX[matrix]}.weight"


def parse_peft_key(key: str):
    """(HF module path, LORA_A or LORA_B) of a PEFT LoRA tensor name, or None."""
    m = _KEY.match(key)
    if m is None:
        return None
    return m["module"], LORA_A if m["matrix"] == "lora_A" else LORA_B


def layer_of(module: str):
    """The layer index in a module path, or None (lm_head)."""
    m = _LAYER.search(f".{module}.")
    return int(m.group(1)) if m else None


def _by_short_name(modules, num_layers: int):
    """{short name: sorted layer indices} if every short name covers every layer
    0..num_layers-1 (lm_head: present), else None."""
    layers = {}
    for module in modules:
        layers.setdefault(module.rpartition(".")[2], set()).add(layer_of(module))
    full = set(range(num_layers))
    if all(found == {None} or found == full for found in layers.values()):
        return list(layers)
    return None


def peft_target_modules(ms_modules: list, num_layers: int):
    """PEFT's target_modules selecting exactly `ms_modules`: HF short names where
    they cover every layer (q_proj, ...), else a regex PEFT fullmatches."""
    hf = [hf_module(m) for m in ms_modules]
    short = _by_short_name(hf, num_layers)
    if short is not None:
        return short
    return "|".join(re.escape(m) for m in hf)


def mindformers_target_modules(ms_modules: list, num_layers: int) -> str:
    """pet_config.target_modules (re.match against mindsft's Dense paths) selecting
    exactly `ms_modules`: MindFormers' `.*wq|.*wv` form where each name covers
    every layer, else the paths anchored one by one."""
    short = _by_short_name(ms_modules, num_layers)
    if short is not None:
        return "|".join(f".*{name}" if name != OUTPUT_LAYER else OUTPUT_LAYER for name in short)
    return "|".join(re.escape(m) + "$" for m in ms_modules)


def _compile(pattern: str, what: str):
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise MindsftError(f"{what} {pattern!r}: bad regex ({exc})") from None


def select_mindformers(target_modules: str, paths) -> list:
    """The paths MindFormers' `target_modules` selects (re.match, as `inject_lora`)."""
    pattern = _compile(target_modules, "pet_config.target_modules")
    return [p for p in paths if pattern.match(p)]


def select_peft(target_modules, hf_paths) -> list:
    """The HF module paths PEFT's `target_modules` selects: a regex fullmatch, a
    list of names (equal or a `.`-suffix), or "all-linear" (all but the output layer)."""
    if target_modules == "all-linear":
        return [p for p in hf_paths if p != OUTPUT_LAYER]
    if isinstance(target_modules, str):
        pattern = _compile(target_modules, "target_modules")
        return [p for p in hf_paths if pattern.fullmatch(p)]
    return [p for p in hf_paths if any(p == t or p.endswith(f".{t}") for t in target_modules)]

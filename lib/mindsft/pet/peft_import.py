"""`mindsft import-adapter`: a PEFT LoRA adapter trained elsewhere -> a LoRA
checkpoint under MindFormers' names (`model.layers.N.attention.wq.mindpet_delta_lora_a`),
and the `pet_config` a finetune YAML needs to merge or train on from it.

What mindsft's LoRA cannot represent is refused, one line each: DoRA, per-module
ranks or alphas, trained biases, fully trained modules, LoRA outside Llama's
Linear modules. rsLoRA (scaling lora_alpha / sqrt(r)) is represented exactly by
writing lora_alpha * sqrt(r) as the pet_config's lora_alpha, since mindsft
scales by lora_alpha / lora_rank: the matrices stay bit for bit.
"""

import math
from pathlib import Path

from mindsft.convert import raw
from mindsft.convert.ckpt import CkptWriter
from mindsft.convert.hf_folder import BinFile
from mindsft.convert.safetensors_io import read_header
from mindsft.errors import MindsftError
from mindsft.files import read_json
from mindsft.models.config import load_config
from mindsft.pet import peft
from mindsft.pet.config import LORA_A, LORA_B, LoraConfig

# adapter_config.json keys whose value never changes what the matrices mean
# (the matrices present decide which modules are adapted)
ANY_VALUE = {
    "auto_mapping",
    "base_model_name_or_path",
    "ensure_weight_tying",
    "exclude_modules",
    "inference_mode",
    "layers_pattern",
    "layers_to_transform",
    "lora_alpha",
    "lora_dropout",
    "megatron_core",
    "peft_type",
    "peft_version",
    "qalora_group_size",
    "r",
    "revision",
    "target_modules",
    "task_type",
    "use_rslora",
}
# what the other keys' non-default values would need, where a name helps
CANNOT = {
    "use_dora": "DoRA's magnitude vectors",
    "rank_pattern": "per-module ranks",
    "alpha_pattern": "per-module alphas",
    "bias": "trained biases",
    "lora_bias": "trained biases",
    "modules_to_save": "fully trained modules",
    "trainable_token_indices": "trained token embeddings",
    "layer_replication": "replicated layers",
}
NEUTRAL = (None, False, {}, [], "none")
# initialisations that only draw A and B; the others (PiSSA, OLoRA, LoftQ, ...) also
# change the base weights, which an adapter saved without conversion then needs
PLAIN_INIT = (True, False, "gaussian")


def read_adapter_config(folder: Path) -> dict:
    """adapter_config.json, checked to describe a plain LoRA mindsft can hold."""
    path = folder / peft.CONFIG
    cfg = read_json(path)
    if cfg.get("peft_type") != "LORA":
        raise MindsftError(f"{path}: peft_type {cfg.get('peft_type')!r} is not LORA")
    init = cfg.get("init_lora_weights", True)
    if init not in PLAIN_INIT:
        raise MindsftError(
            f"{path}: init_lora_weights={init!r} changed the base weights; convert the adapter "
            "to plain LoRA (PEFT's path_initial_model_for_weight_conversion) first"
        )
    for key, value in cfg.items():
        if key not in ANY_VALUE and key != "init_lora_weights" and value not in NEUTRAL:
            what = CANNOT.get(key, "this setting")
            raise MindsftError(f"{path}: {key}={value!r}: mindsft's LoRA cannot represent {what}")
    r, alpha, dropout = cfg.get("r"), cfg.get("lora_alpha"), cfg.get("lora_dropout", 0.0)
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise MindsftError(f"{path}: r={r!r} is not a positive integer")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise MindsftError(f"{path}: lora_alpha={alpha!r} is not a number")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise MindsftError(f"{path}: lora_dropout={dropout!r} is not in [0, 1)")
    if not cfg.get("target_modules"):
        raise MindsftError(f"{path}: target_modules is missing")
    return cfg


def read_matrices(folder: Path) -> tuple:
    """(weights file, {HF module: {LORA_A: tensor, LORA_B: tensor}}) of an adapter;
    anything but lora_A/lora_B of a Llama Linear module is an error."""
    path = folder / peft.WEIGHTS
    if path.is_file():
        tensors = read_header(path)
    elif (folder / peft.WEIGHTS_BIN).is_file():
        path = folder / peft.WEIGHTS_BIN
        tensors = BinFile(path).tensors()
    else:
        raise MindsftError(f"{folder}: no {peft.WEIGHTS} (or {peft.WEIGHTS_BIN})")
    modules = {}
    for t in tensors:
        parsed = peft.parse_peft_key(t.name)
        if parsed is None and t.name.endswith(".base_layer.weight"):
            raise MindsftError(
                f"{path}: tensor {t.name!r} is a full base weight (PEFT saves one for "
                "embedding-like targets); save the adapter with save_embedding_layers=False"
            )
        if parsed is None:
            raise MindsftError(
                f"{path}: tensor {t.name!r} is not a LoRA A or B matrix of a Linear module"
            )
        module, matrix = parsed
        try:
            peft.ms_module(module)
        except MindsftError:
            raise MindsftError(
                f"{path}: tensor {t.name!r}: {module!r} is not a module of mindsft's Llama "
                f"(its Linear modules: {', '.join(peft.LINEAR)})"
            ) from None
        if t.dtype not in raw.FLOATS:
            raise MindsftError(f"{path}: tensor {t.name!r} is {t.dtype}, not a float type")
        modules.setdefault(module, {})[matrix] = t
    for module, pair in modules.items():
        for matrix in (LORA_A, LORA_B):
            if matrix not in pair:
                raise MindsftError(f"{path}: no {peft.peft_key(peft.ms_module(module), matrix)!r}")
    if not modules:
        raise MindsftError(f"{path}: holds no LoRA matrices")
    return path, modules


def check_targets(target_modules, modules: dict, num_layers: int, where) -> None:
    """Each target_modules entry names a module of a Llama, and selects every
    module that has matrices (PEFT's matching: fullmatch, name or `.`-suffix)."""
    paths = peft.hf_linear_paths(num_layers)
    entries = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    for entry in entries:
        one = entry if isinstance(target_modules, str) else [entry]
        if not isinstance(entry, str) or not peft.select_peft(one, paths):
            raise MindsftError(
                f"{where}: target_modules entry {entry!r} names no module of a Llama "
                f"(its Linear modules: {', '.join(peft.LINEAR)})"
            )
    selected = set(peft.select_peft(target_modules, paths))
    unselected = sorted(set(modules) - selected)
    if unselected:
        raise MindsftError(
            f"{where}: target_modules {target_modules!r} does not select {unselected[0]!r}, "
            "which has LoRA matrices"
        )


def check_shapes(modules: dict, r: int, path: Path, config=None, config_path=None) -> None:
    """A (r, in) and B (out, r) for every module; with a config, every module exists
    in that Llama and (out, in) is its weight's shape."""
    linear = peft.linear_modules(config) if config is not None else {}
    for module, pair in modules.items():
        a, b = pair[LORA_A], pair[LORA_B]
        if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[0] != r or b.shape[1] != r:
            raise MindsftError(
                f"{path}: {module} has A {list(a.shape)} and B {list(b.shape)}, not "
                f"(r, in) and (out, r) with adapter_config r={r}"
            )
        if config is None:
            continue
        name = peft.ms_module(module)
        if name not in linear:
            layer = peft.layer_of(module)
            why = (
                f"layer {layer}, but {config_path} has num_layers {config.num_layers}"
                if layer is not None
                else f"{config_path} ties lm_head to the embedding"
            )
            raise MindsftError(f"{path}: LoRA on {module}: {why}")
        out, inp = linear[name][1]
        if (b.shape[0], a.shape[1]) != (out, inp):
            raise MindsftError(
                f"{path}: {module} adapts a [{b.shape[0]}, {a.shape[1]}] weight; the base in "
                f"{config_path} has [{out}, {inp}] (hidden_size {config.hidden_size})"
            )


def pet_config(cfg: dict, ms_modules: list, num_layers: int) -> LoraConfig:
    """The pet_config that makes mindsft's LoRA compute what the adapter computes."""
    alpha = float(cfg["lora_alpha"])
    if cfg.get("use_rslora"):
        alpha *= math.sqrt(cfg["r"])  # mindsft scales by alpha / r; rsLoRA by alpha / sqrt(r)
    return LoraConfig(
        lora_rank=cfg["r"],
        lora_alpha=alpha,
        lora_dropout=float(cfg.get("lora_dropout", 0.0)),
        target_modules=peft.mindformers_target_modules(ms_modules, num_layers),
    )


def import_adapter(adapter_dir, output_path, config_path=None) -> LoraConfig:
    """Write the LoRA matrices of the PEFT adapter in `adapter_dir` to a MindSpore
    checkpoint at `output_path` under MindFormers' names, bit for bit; with
    `config_path` (HF config.json or its folder, or a MindFormers YAML) check them
    against that base. Returns the pet_config to train or merge with."""
    folder = Path(adapter_dir)
    cfg = read_adapter_config(folder)
    path, modules = read_matrices(folder)
    config = load_config(config_path) if config_path is not None else None
    check_shapes(modules, cfg["r"], path, config, config_path)
    layers = [peft.layer_of(m) for m in modules if peft.layer_of(m) is not None]
    num_layers = config.num_layers if config is not None else max(layers, default=-1) + 1
    check_targets(cfg["target_modules"], modules, num_layers, folder / peft.CONFIG)
    order = [m for m in peft.hf_linear_paths(num_layers) if m in modules]
    ms_modules = [peft.ms_module(m) for m in order]
    restricted = any(cfg.get(k) not in NEUTRAL for k in ("layers_to_transform", "exclude_modules"))
    if config is None and restricted:
        num_layers = -1  # the base's layer count is unknown: name the modules one by one
    write_checkpoint(
        output_path,
        [
            (f"{name}.{matrix}", modules[module][matrix])
            for module, name in zip(order, ms_modules, strict=True)
            for matrix in (LORA_A, LORA_B)
        ],
    )
    return pet_config(cfg, ms_modules, num_layers)


def write_checkpoint(output_path, tensors: list) -> None:
    """Write (name, tensor) pairs to a MindSpore checkpoint, bytes copied as they are."""
    with CkptWriter(output_path) as out:
        for name, t in tensors:
            out.write_raw(name, t.dtype, t.shape, t.chunks())

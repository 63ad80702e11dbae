"""Build a LlamaForCausalLM and fill it from MindSpore checkpoints, with one-line
errors for checkpoints that do not fit the config.

What `--load_checkpoint` may name (a file, MindFormers' rank folders, a folder of
files loaded together) is resolved by `mindsft.train.load_checkpoint`. LoRA
matrices (`mindpet_delta_lora_a/b`) in it are handed back to a LoRA run, which
sets them after injecting its LoRA layers (continuing from a LoRA checkpoint,
mindsft's or MindFormers'); any other model refuses them as an unmerged LoRA. A
mindsft LoRA training checkpoint holds no base weights: they are read from the
base checkpoint its run signature names, if that file is still there unchanged.
"""

from dataclasses import dataclass, field
from pathlib import Path

import mindspore as ms

from mindsft.convert.names import MODEL_PREFIXES
from mindsft.errors import MindsftError
from mindsft.files import file_sha256
from mindsft.models.llama import LlamaForCausalLM
from mindsft.pet.config import is_lora_param
from mindsft.train.checkpoint import read_signature
from mindsft.train.load_checkpoint import weight_files

EMBEDDING = "model.tok_embeddings.embedding_weight"


def _listing(names, limit=6) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_checkpoint(path) -> dict:
    """{name: Parameter} of a MindSpore checkpoint, with a one-line error when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise MindsftError(f"{path}: no such checkpoint file")
    try:
        return ms.load_checkpoint(str(path))
    except (RuntimeError, ValueError, OSError, TypeError) as exc:
        raise MindsftError(
            f"{path}: not a readable MindSpore checkpoint ({str(exc).splitlines()[0]})"
        ) from None


@dataclass
class LoadedWeights:
    """What load_weights read."""

    files: list
    """The checkpoint files the weights came from."""
    lora: dict = field(default_factory=dict)
    """LoRA matrices found ({name: Parameter}), for load_lora_weights."""


def _base_of(path: Path, stored: dict) -> list:
    """The base checkpoint(s) the signature of a LoRA-only mindsft checkpoint names,
    checked unchanged by sha256."""
    signature = read_signature(stored) or {}
    bases = list(zip(signature.get("base_paths", []), signature.get("base", []), strict=False))
    if bases and all(Path(p).is_file() and file_sha256(p) == sha for p, sha in bases):
        return [Path(p) for p, _ in bases]
    named = f" (its run started from {', '.join(p for p, _ in bases)}, now missing or changed)"
    raise MindsftError(
        f"{path}: holds LoRA matrices but no base weights{named if bases else ''}; put the base "
        "checkpoint and this file in one folder and load the folder"
    )


def read_weights(source, rank: int = 0, world: int = 1) -> tuple:
    """({name: Parameter}, files read) of the weights `source` names."""
    files = weight_files(source, rank, world)
    stored, where = {}, {}
    for path in files:
        for name, value in read_checkpoint(path).items():
            if name in stored and name.startswith(MODEL_PREFIXES):
                raise MindsftError(f"{source}: {where[name]} and {path.name} both hold {name}")
            stored[name], where[name] = value, path.name
    model = [n for n in stored if n.startswith(MODEL_PREFIXES)]
    if model and all(is_lora_param(n) for n in model):
        bases = _base_of(files[0], stored)
        for path in bases:
            stored.update(read_checkpoint(path))
        files = [*bases, *files]
    return stored, files


def load_weights(model: LlamaForCausalLM, source, *, lora=False, rank=0, world=1):
    """Load the weights `source` names into `model` (any stored float dtype, cast to
    float32); return a LoadedWeights.

    Optimizer state (adam_m.*, global_step, ...) is ignored; missing parameters,
    Llama weights the model has no place for (LoRA matrices, unless `lora`), a
    vocab size other than the config's, or any other shape mismatch is a MindsftError."""
    stored, files = read_weights(source, rank, world)
    where = files[-1] if len(files) == 1 else source
    wanted = model.parameters_dict()
    missing = [n for n in wanted if n not in stored]
    if missing:
        raise MindsftError(
            f"{where}: missing {len(missing)} parameter(s) the model needs: {_listing(missing)}"
        )
    extra = [n for n in stored if n.startswith(MODEL_PREFIXES) and n not in wanted]
    found_lora = {n: stored[n] for n in extra if lora and is_lora_param(n)}
    extra = [n for n in extra if n not in found_lora]
    if extra:
        raise MindsftError(
            f"{where}: holds {len(extra)} weight(s) this model has no place for "
            f"(unmerged LoRA? run merge-lora first): {_listing(extra)}"
        )
    vocab = model.config.vocab_size
    if stored[EMBEDDING].shape[0] != vocab:
        raise MindsftError(
            f"{where}: vocab size {stored[EMBEDDING].shape[0]} ({EMBEDDING}) differs from the "
            f"config's vocab_size {vocab}"
        )
    _set(wanted, stored, where)
    return LoadedWeights(files, found_lora)


def _set(wanted: dict, stored: dict, where) -> None:
    for name, param in wanted.items():
        if tuple(stored[name].shape) != tuple(param.shape):
            raise MindsftError(
                f"{where}: tensor {name} has shape {tuple(stored[name].shape)}, the config "
                f"needs {tuple(param.shape)}"
            )
        param.set_data(stored[name].astype(param.dtype))


def load_lora_weights(model, tensors: dict, source) -> None:
    """Set the LoRA matrices of a model with LoRA injected from `tensors` (a
    LoadedWeights.lora); they must be exactly the model's, shape for shape."""
    if not tensors:
        return
    wanted = {p.name: p for p in model.get_parameters() if is_lora_param(p.name)}
    if set(tensors) != set(wanted):
        odd = sorted(set(tensors) ^ set(wanted))
        raise MindsftError(
            f"{source}: its LoRA matrices do not match the config's target_modules "
            f"({len(set(tensors) - set(wanted))} extra, {len(set(wanted) - set(tensors))} "
            f"missing: {_listing(odd)})"
        )
    _set(wanted, tensors, source)


def load_model(config, checkpoint) -> LlamaForCausalLM:
    """A LlamaForCausalLM for `config` with the weights of `checkpoint`, in inference mode."""
    model = LlamaForCausalLM(config)
    load_weights(model, checkpoint)
    model.set_train(False)
    return model

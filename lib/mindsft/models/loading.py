"""Build a LlamaForCausalLM and fill it from a MindSpore checkpoint, with one-line
errors for checkpoints that do not fit the config."""

from pathlib import Path

import mindspore as ms

from mindsft.convert.names import MODEL_PREFIXES
from mindsft.errors import MindsftError
from mindsft.models.llama import LlamaForCausalLM

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


def load_weights(model: LlamaForCausalLM, path) -> None:
    """Load the checkpoint at `path` into `model` (any stored float dtype, cast to float32).

    Optimizer state (adam_m.*, global_step, ...) is ignored; missing parameters,
    Llama weights the model has no place for (an unmerged LoRA), a vocab size
    other than the config's, or any other shape mismatch is a MindsftError."""
    stored = read_checkpoint(path)
    wanted = model.parameters_dict()
    missing = [n for n in wanted if n not in stored]
    if missing:
        raise MindsftError(
            f"{path}: missing {len(missing)} parameter(s) the model needs: {_listing(missing)}"
        )
    extra = [n for n in stored if n.startswith(MODEL_PREFIXES) and n not in wanted]
    if extra:
        raise MindsftError(
            f"{path}: holds {len(extra)} weight(s) this model has no place for "
            f"(unmerged LoRA? run merge-lora first): {_listing(extra)}"
        )
    vocab = model.config.vocab_size
    if stored[EMBEDDING].shape[0] != vocab:
        raise MindsftError(
            f"{path}: vocab size {stored[EMBEDDING].shape[0]} ({EMBEDDING}) differs from the "
            f"config's vocab_size {vocab}"
        )
    for name, param in wanted.items():
        if tuple(stored[name].shape) != tuple(param.shape):
            raise MindsftError(
                f"{path}: tensor {name} has shape {tuple(stored[name].shape)}, the config "
                f"needs {tuple(param.shape)}"
            )
        param.set_data(stored[name].astype(ms.float32))


def load_model(config, checkpoint) -> LlamaForCausalLM:
    """A LlamaForCausalLM for `config` with the weights of `checkpoint`, in inference mode."""
    model = LlamaForCausalLM(config)
    load_weights(model, checkpoint)
    model.set_train(False)
    return model

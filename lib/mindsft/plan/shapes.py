"""What a mindsft Llama holds, counted without building it: every parameter's
name and shape (the converter's table, under MindFormers' names), the Dense
layers LoRA can wrap, and the LoRA matrices a `pet_config` adds."""

import re
from dataclasses import dataclass
from math import prod

from mindsft.convert.llama import expected_shapes
from mindsft.convert.names import hf_to_ms
from mindsft.errors import MindsftError
from mindsft.models.config import LlamaConfig
from mindsft.pet.config import LoraConfig


def parameter_shapes(config: LlamaConfig) -> dict:
    """MindFormers parameter name -> shape, for every parameter of the model."""
    return {hf_to_ms(name): shape for name, shape in expected_shapes(config.to_hf_dict()).items()}


def dense_shapes(config: LlamaConfig) -> dict:
    """Dense cell path (as `cells_and_names` names it) -> weight shape (out, in)."""
    return {
        name.removesuffix(".weight"): shape
        for name, shape in parameter_shapes(config).items()
        if name.endswith(".weight") and len(shape) == 2
    }


def lora_targets(config: LlamaConfig, lora: LoraConfig) -> dict:
    """The Dense layers `lora.target_modules` wraps (re.match, as MindFormers), path ->
    (out, in); matching nothing is the error `inject_lora` gives."""
    dense = dense_shapes(config)
    pattern = re.compile(lora.target_modules)
    chosen = {path: shape for path, shape in dense.items() if pattern.match(path)}
    if not chosen:
        shown = sorted({re.sub(r"\.\d+\.", ".N.", p) for p in dense})
        raise MindsftError(
            f"pet_config.target_modules {lora.target_modules!r} matches no Dense module; "
            f"modules: {shown}"
        )
    return chosen


@dataclass(frozen=True)
class ParameterCounts:
    """Element counts of the model's tensors."""

    total: int
    """Every base parameter (the LoRA matrices excluded)."""
    dense: int
    """The Dense weights (every matrix but the embedding table)."""
    lora: int
    """The LoRA A and B matrices (0 without pet_config)."""
    lora_inputs: int
    """Sum of the wrapped layers' input widths (one dropout-mask column each)."""
    vectors: int
    """The 1-D parameters (RMSNorm weights)."""
    largest: int
    """The largest single parameter."""

    @property
    def trainable(self) -> int:
        return self.lora if self.lora else self.total


def count_parameters(config: LlamaConfig, lora: LoraConfig | None = None) -> ParameterCounts:
    shapes = parameter_shapes(config)
    dense = dense_shapes(config)
    targets = lora_targets(config, lora) if lora is not None else {}
    rank = lora.lora_rank if lora is not None else 0
    return ParameterCounts(
        total=sum(prod(s) for s in shapes.values()),
        dense=sum(prod(s) for s in dense.values()),
        lora=sum(rank * (out + inp) for out, inp in targets.values()),
        lora_inputs=sum(inp for _, inp in targets.values()),
        vectors=sum(prod(s) for s in shapes.values() if len(s) == 1),
        largest=max(prod(s) for s in shapes.values()),
    )

"""LoRA settings and checkpoint names, free of MindSpore so that parsing a
finetune YAML or merging a state dict does not import the framework."""

from dataclasses import dataclass

from mindsft.errors import MindsftError

LORA_A = "mindpet_delta_lora_a"
LORA_B = "mindpet_delta_lora_b"
# the scalar a mindsft LoRA training checkpoint records its lora_alpha under, so that
# merge-lora can refuse a config with another (the rank is in the matrices' shapes)
LORA_ALPHA_RECORD = "lora_alpha"


@dataclass
class LoraConfig:
    """MindFormers' `model.model_config.pet_config` for `pet_type: lora`."""

    lora_rank: int = 8
    """r: inner dimension of the A and B matrices."""
    lora_alpha: float = 16
    """The update is scaled by lora_alpha / lora_rank."""
    lora_dropout: float = 0.0
    """Dropout probability on the input of A (training only)."""
    target_modules: str = r".*wq|.*wk|.*wv|.*wo"
    """Regular expression matched (re.match) against Dense cell paths."""

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.lora_rank

    @classmethod
    def from_pet_config(cls, pet: dict) -> "LoraConfig":
        """Build from a YAML `pet_config` dict; other pet types are an error."""
        pet_type = str(pet.get("pet_type", "lora")).lower()
        if pet_type != "lora":
            raise MindsftError(f"pet_config: pet_type {pet_type!r} is not supported (only 'lora')")
        known = {"pet_type", "lora_rank", "lora_alpha", "lora_dropout", "target_modules"}
        unknown = sorted(set(pet) - known)
        if unknown:
            raise MindsftError(f"pet_config: keys {unknown} are not supported by mindsft's LoRA")
        cfg = cls(
            lora_rank=int(pet.get("lora_rank", cls.lora_rank)),
            lora_alpha=float(pet.get("lora_alpha", cls.lora_alpha)),
            lora_dropout=float(pet.get("lora_dropout", cls.lora_dropout)),
            target_modules=str(pet.get("target_modules", cls.target_modules)),
        )
        if cfg.lora_rank < 1 or not 0.0 <= cfg.lora_dropout < 1.0:
            raise MindsftError(
                f"pet_config: lora_rank must be >= 1 and lora_dropout in [0, 1), got {pet}"
            )
        return cfg


def is_lora_param(name: str) -> bool:
    return name.endswith((LORA_A, LORA_B))

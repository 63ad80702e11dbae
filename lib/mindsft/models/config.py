"""LlamaConfig: one dataclass for the model's shape and numerics, built from an
HF `config.json` or from MindFormers' `model.model_config` YAML section."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mindsft.convert.hf_folder import check_config_fields, config_file
from mindsft.errors import MindsftError
from mindsft.files import read_json, read_yaml
from mindsft.keys import BOOL, INT, POSITIVE_INT, POSITIVE_NUMBER, TEXT, check_kinds

COMPUTE_DTYPES = ("float32", "float16", "bfloat16")

# the MindFormers `model_config` keys `from_mindformers` reads, with their kinds
MODEL_CONFIG_KEYS = {
    "hidden_size": POSITIVE_INT,
    "num_layers": POSITIVE_INT,
    "num_heads": POSITIVE_INT,
    "n_kv_heads": POSITIVE_INT.or_none(),
    "vocab_size": POSITIVE_INT,
    "intermediate_size": POSITIVE_INT.or_none(),
    "multiple_of": POSITIVE_INT,
    "ffn_dim_multiplier": POSITIVE_NUMBER.or_none(),
    "rms_norm_eps": POSITIVE_NUMBER,
    "rope_theta": POSITIVE_NUMBER,
    "theta": POSITIVE_NUMBER,
    "compute_dtype": TEXT,
    "seq_length": POSITIVE_INT,
    "tie_word_embeddings": BOOL,
    "pad_token_id": INT.or_none(),
    "bos_token_id": INT.or_none(),
    "eos_token_id": INT.or_none(),
    "ignore_token_id": INT.or_none(),
}

# MindFormers spells dtypes several ways in its YAMLs
_DTYPE_ALIASES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def mindformers_ffn_size(hidden_size, multiple_of=256, ffn_dim_multiplier=None) -> int:
    """The SwiGLU hidden size MindFormers' LlamaFeedForward derives when the config
    gives no intermediate_size: start from 4 * hidden, scale by
    (ffn_dim_multiplier + 0.01) if set, take two thirds, round up to multiple_of.
    (Llama 2 7B: 4096 -> 11008.)"""
    size = 4 * hidden_size
    if ffn_dim_multiplier is not None:
        size = int((ffn_dim_multiplier + 0.01) * size)
    size = int(2 * size / 3)
    return multiple_of * ((size + multiple_of - 1) // multiple_of)


def _dtype(value, source) -> str:
    name = _DTYPE_ALIASES.get(str(value).lower())
    if name is None:
        raise MindsftError(
            f"{source}: compute_dtype {value!r} is not one of {', '.join(COMPUTE_DTYPES)}"
        )
    return name


@dataclass
class LlamaConfig:
    """Shape and numerics of a Llama model (MindFormers' field names)."""

    # shape
    vocab_size: int = 32000
    hidden_size: int = 4096
    num_layers: int = 32
    num_heads: int = 32
    n_kv_heads: int | None = None  # None: as many as num_heads (multi-head attention)
    intermediate_size: int = 11008
    # numerics
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    compute_dtype: str = "float32"
    # tokens
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    ignore_token_id: int = -100
    # sequence length the model is trained and evaluated at (HF max_position_embeddings)
    seq_length: int = 4096
    tie_word_embeddings: bool = False

    def __post_init__(self):
        self.compute_dtype = _dtype(self.compute_dtype, "LlamaConfig")
        if self.n_kv_heads is None:
            self.n_kv_heads = self.num_heads
        checks = [
            (self.hidden_size % self.num_heads == 0, "hidden_size must be a multiple of num_heads"),
            (self.num_heads % self.n_kv_heads == 0, "num_heads must be a multiple of n_kv_heads"),
            (
                (self.hidden_size // self.num_heads) % 2 == 0,
                "the head size must be even for rotary embeddings",
            ),
        ]
        for ok, what in checks:
            if not ok:
                raise MindsftError(
                    f"LlamaConfig: {what} (hidden_size {self.hidden_size}, num_heads "
                    f"{self.num_heads}, "
                    f"n_kv_heads {self.n_kv_heads})"
                )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    # ---- constructors -------------------------------------------------------
    @classmethod
    def from_hf(cls, source) -> "LlamaConfig":
        """From an HF Llama `config.json`: a dict, the file, or the folder holding it."""
        if isinstance(source, dict):
            where, hf = "HF config", source
        else:
            where = config_file(source)
            hf = read_json(where)
        check_config_fields(hf, where)
        hidden, heads = hf["hidden_size"], hf["num_attention_heads"]
        if hf.get("head_dim") not in (None, hidden // heads):
            raise MindsftError(
                f"{where}: head_dim {hf['head_dim']} != hidden_size / num_attention_heads"
            )
        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise MindsftError(
                f"{where}: rope scaling {rope!r} is not supported (only default rotary embeddings)"
            )
        theta = hf.get("rope_theta", rope.get("rope_theta", 10000.0))
        eos = hf.get("eos_token_id", 2)
        return cls(
            vocab_size=hf["vocab_size"],
            hidden_size=hidden,
            num_layers=hf["num_hidden_layers"],
            num_heads=heads,
            n_kv_heads=hf.get("num_key_value_heads") or heads,
            intermediate_size=hf["intermediate_size"],
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(theta),
            # torch_dtype is how the weights are stored, not how to compute: fp32 here
            pad_token_id=hf.get("pad_token_id") if hf.get("pad_token_id") is not None else 0,
            bos_token_id=hf.get("bos_token_id", 1),
            eos_token_id=eos[0] if isinstance(eos, list) else eos,
            seq_length=hf.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        )

    @classmethod
    def from_mindformers(cls, mc: dict, where: str = "model_config") -> "LlamaConfig":
        """From MindFormers' `model.model_config` mapping (keys as in its YAMLs)."""
        check_kinds(mc, MODEL_CONFIG_KEYS, where)
        for key in ("hidden_size", "num_layers", "num_heads", "vocab_size"):
            if key not in mc:
                raise MindsftError(f"{where}: key {key!r} is missing")
        inter = mc.get("intermediate_size")
        if inter is None:
            inter = mindformers_ffn_size(
                mc["hidden_size"], mc.get("multiple_of", 256), mc.get("ffn_dim_multiplier")
            )
        fields = {
            "vocab_size": mc["vocab_size"],
            "hidden_size": mc["hidden_size"],
            "num_layers": mc["num_layers"],
            "num_heads": mc["num_heads"],
            "n_kv_heads": mc.get("n_kv_heads") or mc["num_heads"],
            "intermediate_size": inter,
            "rms_norm_eps": mc.get("rms_norm_eps", 1e-5),
            "rope_theta": float(mc.get("rope_theta", mc.get("theta", 10000.0))),
            "compute_dtype": _dtype(mc.get("compute_dtype", "float32"), where),
            "seq_length": mc.get("seq_length", 4096),
            "tie_word_embeddings": bool(mc.get("tie_word_embeddings", False)),
        }
        for key in ("pad_token_id", "bos_token_id", "eos_token_id", "ignore_token_id"):
            if mc.get(key) is not None:
                fields[key] = mc[key]
        return cls(**fields)

    # ---- serialisation ------------------------------------------------------
    def to_dict(self) -> dict:
        """MindFormers `model_config` keys (what `from_mindformers` reads back)."""
        return dataclasses.asdict(self)

    def to_hf_dict(self) -> dict:
        """An HF `config.json` for LlamaForCausalLM with this shape."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.n_kv_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.seq_length,
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": False,
            "mlp_bias": False,
            "torch_dtype": self.compute_dtype,
        }


def is_hf_config(path) -> bool:
    """Whether `path` names an HF config.json (the file or its folder), not a YAML."""
    path = Path(path)
    return path.is_dir() or path.suffix == ".json"


def load_config(path) -> LlamaConfig:
    """LlamaConfig from an HF `config.json`, a folder holding one, or a
    MindFormers-style YAML (its `model.model_config` section)."""
    if is_hf_config(path):
        return LlamaConfig.from_hf(path)
    model = read_yaml(path).get("model")
    mc = model.get("model_config") if isinstance(model, dict) else None
    if not isinstance(mc, dict):
        raise MindsftError(f"{path}: no model.model_config section")
    return LlamaConfig.from_mindformers(mc, where=f"{path} model.model_config")

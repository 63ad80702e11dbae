"""An HF model folder: its config.json, its weight files (safetensors preferred,
sharded through an index or not, else PyTorch `.bin`) and its tokenizer.model.

Weights are listed by name, type and shape without reading their bytes: from
safetensors headers, or from `.bin` files loaded with `torch.load(weights_only=True,
mmap=True)` (no arbitrary unpickling, and the data stays on disk until read).
"""

from dataclasses import dataclass
from pathlib import Path

from mindsft.convert import raw, safetensors_io
from mindsft.errors import MindsftError
from mindsft.files import read_json

CONFIG = "config.json"
# the fields of an HF Llama config.json that the shapes depend on
CONFIG_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
)
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


def config_file(path) -> Path:
    """The config.json an HF config path names: the file itself, or the one in a folder."""
    path = Path(path)
    return path / CONFIG if path.is_dir() else path


def check_config_fields(config: dict, where) -> dict:
    """The HF config fields a Llama's shapes depend on must be positive integers;
    `where` names the config in the one-line error."""
    for key in CONFIG_FIELDS:
        if not isinstance(config.get(key), int) or config[key] <= 0:
            raise MindsftError(f"{where}: field {key!r} is missing or not a positive integer")
    return config


def _files_from_index(folder: Path, index_name: str) -> list:
    index = read_json(folder / index_name)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise MindsftError(f"{folder / index_name}: no weight_map")
    files = sorted(set(weight_map.values()))
    for name in files:
        if not (folder / name).is_file():
            raise MindsftError(f"{folder / index_name}: lists {name}, which is not in the folder")
    return [folder / name for name in files]


def weight_files(folder) -> tuple:
    """(kind, files) with kind 'safetensors' or 'bin': safetensors wherever present."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MindsftError(f"{folder}: no such model folder")
    if (folder / SAFETENSORS_INDEX).is_file():
        return "safetensors", _files_from_index(folder, SAFETENSORS_INDEX)
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return "safetensors", files
    if (folder / BIN_INDEX).is_file():
        return "bin", _files_from_index(folder, BIN_INDEX)
    files = sorted(folder.glob("*.bin"))
    if files:
        return "bin", files
    raise MindsftError(f"{folder}: no weights (neither *.safetensors nor *.bin files)")


@dataclass
class BinTensor:
    """One tensor of a `.bin` file; its bytes are read through torch's mmap."""

    path: Path
    name: str
    dtype: str
    shape: tuple
    _file: "BinFile"

    def chunks(self, size: int = raw.CHUNK_BYTES):
        import torch

        tensor = self._file.state()[self.name].contiguous()
        data = tensor.view(-1).view(torch.uint8).numpy()
        for start in range(0, data.nbytes, size):
            yield data[start : start + size]


class BinFile:
    """A PyTorch `.bin` state dict, loaded safely and memory-mapped on demand.
    Only the most recently used file stays open."""

    _open: tuple = (None, None)

    def __init__(self, path: Path):
        self.path = path

    def state(self) -> dict:
        if BinFile._open[0] is not self:
            BinFile._open = (self, self._load())
        return BinFile._open[1]

    def _load(self) -> dict:
        import pickle
        import zipfile

        import torch

        try:
            try:
                state = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                # files in the pre-zip format cannot be memory-mapped
                state = torch.load(self.path, map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as exc:
            if isinstance(exc, pickle.UnpicklingError):
                why = "corrupt, or holds objects other than tensors"
            else:
                why = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise MindsftError(
                f"{self.path}: cannot read PyTorch weights with weights_only=True ({why[:120]})"
            ) from None
        if not isinstance(state, dict):
            raise MindsftError(f"{self.path}: not a state dict")
        return state

    def tensors(self) -> list:
        import torch

        codes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
        out = []
        for name, t in self.state().items():
            if not isinstance(t, torch.Tensor) or t.dtype not in codes:
                raise MindsftError(
                    f"{self.path}: {name!r} is not a float32/float16/bfloat16 tensor"
                )
            out.append(BinTensor(self.path, name, codes[t.dtype], tuple(t.shape), self))
        return out


def list_tensors(folder) -> list:
    """Every weight tensor of an HF folder, in file order; a name in two files is an error."""
    kind, files = weight_files(folder)
    tensors, seen = [], {}
    for path in files:
        found = (
            safetensors_io.read_header(path) if kind == "safetensors" else BinFile(path).tensors()
        )
        for t in found:
            if t.name in seen:
                raise MindsftError(f"{path}: tensor {t.name!r} is also in {seen[t.name]}")
            seen[t.name] = path.name
            tensors.append(t)
    return tensors


def tokenizer_vocab_size(folder):
    """Piece count of the folder's SentencePiece tokenizer.model, or None if it has none."""
    path = Path(folder) / "tokenizer.model"
    if not path.is_file():
        return None
    import sentencepiece as spm

    try:
        return spm.SentencePieceProcessor(model_file=str(path)).get_piece_size()
    except (OSError, RuntimeError) as exc:
        raise MindsftError(f"{path}: not a SentencePiece model ({exc})") from None

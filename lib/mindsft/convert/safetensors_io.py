"""safetensors files, read and written one tensor at a time.

The format (huggingface/safetensors): 8 bytes little-endian header length, a
JSON header `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`
padded with spaces, then the raw little-endian tensor bytes. Reading the header
alone gives every name, type and shape; the bytes are read only when copied.
Written files are byte-for-byte deterministic (declared order, fixed metadata).
"""

import json
import struct
from pathlib import Path

from mindsft.convert import raw
from mindsft.errors import MindsftError

_MAX_HEADER = 100 * 1024 * 1024


def read_header(path) -> list:
    """Every tensor of a safetensors file, checked against the file's size."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise MindsftError(f"{path}: truncated safetensors file (no header)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            raise MindsftError(
                f"{path}: corrupt or truncated safetensors header ({n} bytes claimed)"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MindsftError(f"{path}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise MindsftError(f"{path}: corrupt safetensors header (not a JSON object)")
    base = 8 + n
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise MindsftError(f"{path}: corrupt safetensors header entry {name!r}") from None
        if dtype not in raw.TYPES:
            raise MindsftError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        expected = raw.nbytes_of(dtype, shape)
        if end - begin != expected or begin < 0:
            raise MindsftError(
                f"{path}: tensor {name!r} of shape {list(shape)} {dtype} spans {end - begin} "
                "bytes, "
                f"expected {expected} (corrupt file)"
            )
        if base + end > size:
            raise MindsftError(
                f"{path}: truncated: tensor {name!r} ends at byte {base + end}, file has {size}"
            )
        entries.append(raw.FileTensor(path, name, dtype, shape, [(base + begin, end - begin)]))
    return entries


def write_safetensors(path, tensors, metadata=None, on_tensor=None) -> None:
    """Write `tensors` (objects with name, dtype, shape and chunks(), such as
    `raw.FileTensor`) to one safetensors file, streaming each tensor's bytes;
    `on_tensor`, when given, is called after each. The caller makes the path atomic."""
    header, offset = {"__metadata__": metadata or {"format": "pt"}}, 0
    for t in tensors:
        nbytes = raw.nbytes_of(t.dtype, t.shape)
        header[t.name] = {
            "dtype": t.dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb", buffering=0) as f:
        raw.write_piece(f, struct.pack("<Q", len(blob)) + blob)
        for t in tensors:
            written = sum(raw.write_piece(f, chunk) for chunk in t.chunks())
            begin, end = header[t.name]["data_offsets"]
            if written != end - begin:
                raise MindsftError(
                    f"{path}: tensor {t.name!r} needs {end - begin} bytes, got {written}"
                )
            if on_tensor is not None:
                on_tensor()


def plan_shards(tensors, max_shard_bytes: int) -> list:
    """Group tensors, in order, into shards of at most `max_shard_bytes` (a tensor
    larger than that gets a shard of its own), as transformers' save_pretrained does."""
    shards, size = [[]], 0
    for t in tensors:
        nbytes = raw.nbytes_of(t.dtype, t.shape)
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += nbytes
    return shards


def write_sharded(folder, tensors, max_shard_bytes: int, on_tensor=None) -> dict:
    """Write `tensors` as HF-style shards `model-0000i-of-0000n.safetensors` plus
    `model.safetensors.index.json` into an existing `folder`; returns the index.
    `on_tensor`, when given, is called after each tensor is written."""
    folder = Path(folder)
    shards = plan_shards(tensors, max_shard_bytes)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(folder / name, shard, on_tensor=on_tensor)
        for t in shard:
            weight_map[t.name] = name
            total += raw.nbytes_of(t.dtype, t.shape)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index

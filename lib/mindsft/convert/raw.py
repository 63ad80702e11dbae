"""Raw tensor bytes: element types as the converters name them, conversion
between the float types one chunk at a time, and reading byte ranges of a file.

Types are named by their safetensors codes (`F32`, `BF16`, ...). numpy has no
bfloat16, so bfloat16 data stays raw `uint16` bits here; conversion to and from
float32 is done on the bits (round to nearest even, as torch and MindSpore do).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mindsft.errors import MindsftError

CHUNK_BYTES = 8 * 1024 * 1024  # read/convert/write granularity when streaming

# safetensors code -> (MindSpore checkpoint tensor_type, numpy storage dtype)
TYPES = {
    "F64": ("Float64", np.float64),
    "F32": ("Float32", np.float32),
    "F16": ("Float16", np.float16),
    "BF16": ("BFloat16", np.uint16),
    "I64": ("Int64", np.int64),
    "I32": ("Int32", np.int32),
    "I16": ("Int16", np.int16),
    "I8": ("Int8", np.int8),
    "U8": ("UInt8", np.uint8),
    "BOOL": ("Bool", np.bool_),
}
MS_TO_CODE = {ms: code for code, (ms, _) in TYPES.items()}

# the --dtype words of `convert-weight`, as MindFormers' convert_weight.py spells them
DTYPE_WORDS = {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}
FLOATS = ("F32", "F16", "BF16")


def itemsize(code: str) -> int:
    return np.dtype(TYPES[code][1]).itemsize


def storage_dtype(code: str) -> np.dtype:
    """numpy dtype holding the raw elements (`uint16` bits for BF16)."""
    return np.dtype(TYPES[code][1])


def dtype_code(word: str) -> str:
    """`fp32|fp16|bf16` -> safetensors code; anything else is an error."""
    if word not in DTYPE_WORDS:
        raise MindsftError(f"--dtype {word!r} is not one of {', '.join(DTYPE_WORDS)}")
    return DTYPE_WORDS[word]


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32, exact."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounding to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits >> 16  # one temporary, updated in place
    rounded &= 1
    rounded += 0x7FFF
    rounded += bits
    rounded >>= 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
    return out


def convert_chunk(data, src: str, dst: str):
    """Convert a chunk of raw `src` elements to raw `dst` elements (bytes-like in,
    bytes-like out). Same type: returned as is, no copy."""
    if src == dst:
        return data
    if src not in FLOATS or dst not in FLOATS:
        raise MindsftError(f"cannot convert {src} tensors to {dst}")
    x = np.frombuffer(data, dtype=storage_dtype(src))
    x = bf16_bits_to_f32(x) if src == "BF16" else x.astype(np.float32, copy=False)
    out = f32_to_bf16_bits(x) if dst == "BF16" else x.astype(storage_dtype(dst))
    return memoryview(out).cast("B")


def nbytes_of(dtype: str, shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) * itemsize(dtype)


@dataclass
class FileRange:
    """A piece of a tensor still on disk: `nbytes` bytes of `path` at `offset`.
    Writers copy it file to file in the kernel (copy_file_range), never through memory."""

    path: Path
    offset: int
    nbytes: int

    def __len__(self) -> int:
        return self.nbytes

    def __getitem__(self, item: slice) -> "FileRange":
        start, stop, _ = item.indices(self.nbytes)
        return FileRange(self.path, self.offset + start, max(stop - start, 0))


def write_piece(out, piece) -> int:
    """Write a bytes-like or a FileRange to the unbuffered binary file `out`;
    returns the number of bytes written."""
    if not isinstance(piece, FileRange):
        view = memoryview(piece).cast("B")
        done = 0
        while done < len(view):
            done += out.write(view[done:])
        return done
    with open(piece.path, "rb", buffering=0) as src:
        done = 0
        while done < piece.nbytes:
            try:
                n = os.copy_file_range(
                    src.fileno(), out.fileno(), piece.nbytes - done, piece.offset + done
                )
            except OSError:  # a filesystem pair that cannot: copy through memory
                src.seek(piece.offset + done)
                n = write_piece(out, src.read(min(CHUNK_BYTES, piece.nbytes - done)))
            if n == 0:
                raise MindsftError(f"{piece.path}: truncated at byte {piece.offset + done}")
            done += n
    return done


@dataclass
class FileTensor:
    """One tensor stored in a file as raw bytes at known offsets, read only on demand."""

    path: Path
    name: str
    dtype: str  # safetensors code
    shape: tuple
    parts: list = field(default_factory=list)  # [(offset, nbytes)], in order

    @property
    def nbytes(self) -> int:
        return sum(n for _, n in self.parts)

    def chunks(self, size: int = CHUNK_BYTES):
        """The raw bytes, `size` at a time."""
        with open(self.path, "rb") as f:
            for offset, left in self.parts:
                f.seek(offset)
                while left:
                    data = f.read(min(size, left))
                    if not data:
                        raise MindsftError(f"{self.path}: truncated inside tensor {self.name!r}")
                    left -= len(data)
                    yield data

    def ranges(self):
        """The bytes as FileRanges, for copying without reading them."""
        return [FileRange(self.path, offset, n) for offset, n in self.parts]

    def read(self) -> np.ndarray:
        """The whole tensor as a numpy array (BF16 as raw uint16 bits)."""
        buf = bytearray(self.nbytes)
        view, pos = memoryview(buf), 0
        for data in self.chunks():
            view[pos : pos + len(data)] = data
            pos += len(data)
        return np.frombuffer(buf, dtype=storage_dtype(self.dtype)).reshape(self.shape)


@dataclass
class ArrayTensor:
    """A tensor held in memory (BF16 as uint16 bits), with the FileTensor interface."""

    name: str
    array: np.ndarray
    dtype: str

    @property
    def shape(self) -> tuple:
        return self.array.shape

    def chunks(self, size: int = CHUNK_BYTES):
        view = memoryview(np.ascontiguousarray(self.array)).cast("B")
        for start in range(0, len(view), size):
            yield view[start : start + size]


@dataclass
class CastTensor:
    """Another tensor under a new name and element type, converted chunk by chunk."""

    src: object
    name: str
    dtype: str

    @property
    def shape(self) -> tuple:
        return self.src.shape

    def chunks(self, size: int = CHUNK_BYTES):
        if self.src.dtype == self.dtype and hasattr(self.src, "ranges"):
            yield from self.src.ranges()
            return
        step = size // itemsize(self.src.dtype) * itemsize(self.src.dtype)
        for chunk in self.src.chunks(step):
            yield convert_chunk(chunk, self.src.dtype, self.dtype)

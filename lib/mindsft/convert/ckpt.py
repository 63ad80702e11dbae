"""MindSpore `.ckpt` files, read and written one tensor at a time.

The format is MindSpore's `checkpoint.proto` (mindspore/train/checkpoint_pb2.py):

    message Checkpoint { repeated Value value = 1; }
    message Value { required string tag = 1;
                    oneof value { TensorProto tensor = 2; MapTensorProto maptensor = 3; } }
    message TensorProto { repeated int64 dims = 1; required string tensor_type = 2;
                          required bytes tensor_content = 3; }

A repeated field may be written as length-delimited entries one after another,
so a checkpoint is a plain sequence of `value` records. MindSpore's own
`save_checkpoint` writes tensors above 512 MiB as several records with the same
tag and the full dims, which `load_checkpoint` joins; we do the same. An
optional trailer `b"crc_num" + 10 bytes` (MindSpore's crc_check) is recognised.
Nothing here imports MindSpore, except to give bfloat16 arrays a numpy type.
"""

import contextlib
import io
import sys
from pathlib import Path

import numpy as np

from mindsft.atomic import atomic_output
from mindsft.convert import raw
from mindsft.errors import MindsftError

SLICE_BYTES = 512 * 1024 * 1024  # MindSpore's SLICE_SIZE: one record holds at most this
_CRC_TRAILER = b"crc_num"
_CRC_TRAILER_LEN = 17


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 dims: two's complement, as protobuf encodes them
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _record_header(name: str, tensor_type: str, shape, nbytes: int) -> bytes:
    """Everything of one `value` record that precedes the raw tensor bytes."""
    dims = b"".join(_field(1, 0) + _varint(int(d)) for d in shape)
    ttype = tensor_type.encode()
    tensor_head = dims + _field(2, 2) + _varint(len(ttype)) + ttype + _field(3, 2) + _varint(nbytes)
    tag = name.encode()
    tensor_len = len(tensor_head) + nbytes
    value_head = _field(1, 2) + _varint(len(tag)) + tag + _field(2, 2) + _varint(tensor_len)
    value_len = len(value_head) + tensor_len
    return _field(1, 2) + _varint(value_len) + value_head + tensor_head


def _chunked(chunks, size: int):
    """Re-cut an iterable of bytes-likes into pieces of at most `size` bytes
    (FileRanges pass whole: they are never in memory)."""
    for chunk in chunks:
        if isinstance(chunk, raw.FileRange):
            yield chunk
            continue
        view = memoryview(chunk).cast("B")
        for start in range(0, len(view), size):
            yield view[start : start + size]


class CkptWriter:
    """Write a MindSpore checkpoint one tensor at a time, atomically.

        with CkptWriter("out.ckpt") as w:
            w.write("model.norm_out.weight", array)           # dtype taken from the array
            w.write("lm_head.weight", array32, dtype="BF16")  # converted on the way

    Arrays from `iter_ckpt` (bfloat16 ones too) can be written back as they are.

    On an exception inside the block nothing is left at the path. `suffixes`
    names companion files (`OUT.ckpt<suffix>`) written through `companion()`
    and renamed into place together with the checkpoint."""

    def __init__(self, path, suffixes=()):
        self.path = Path(path)
        self.suffixes = tuple(suffixes)
        self.names = []
        self._stack = None
        self._file = None
        self._tmp = None

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        try:
            self._tmp = self._stack.enter_context(atomic_output(self.path, suffixes=self.suffixes))
            self._file = self._stack.enter_context(open(self._tmp, "wb", buffering=0))
        except BaseException:
            self._stack.__exit__(*sys.exc_info())  # leaves nothing; may name the target
            raise
        return self

    def companion(self, suffix: str) -> Path:
        """Temporary path to write the companion file `OUT.ckpt<suffix>` to."""
        if suffix not in self.suffixes:
            raise ValueError(f"{suffix!r} is not among the declared suffixes {self.suffixes}")
        return Path(f"{self._tmp}{suffix}")

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def write(self, name: str, array, dtype: str | None = None) -> None:
        """Write one tensor; `dtype` (F32, F16, BF16, ...) converts it first."""
        array = np.ascontiguousarray(array)
        src = array_code(array)
        if src == "BF16":
            array = array.view(np.uint16)  # the bits; numpy cannot export bfloat16 buffers
        dst = dtype or src
        self.write_raw(name, dst, array.shape, [raw.convert_chunk(array.reshape(-1), src, dst)])

    def write_raw(self, name: str, dtype: str, shape, chunks) -> None:
        """Write one tensor from raw little-endian bytes of type `dtype` given as an
        iterable of bytes-likes or `raw.FileRange`s (consumed once, never held whole)."""
        if name in self.names:
            raise MindsftError(f"{self.path}: tensor {name!r} written twice")
        shape = tuple(int(d) for d in shape)
        nbytes = raw.nbytes_of(dtype, shape)
        tensor_type = raw.TYPES[dtype][0]
        remaining, record_left = nbytes, 0
        for piece in _chunked(chunks, raw.CHUNK_BYTES):
            while len(piece):
                if record_left == 0:
                    if remaining == 0:
                        raise MindsftError(
                            f"{self.path}: tensor {name!r} got more than {nbytes} bytes"
                        )
                    record_left = min(SLICE_BYTES, remaining)
                    raw.write_piece(
                        self._file, _record_header(name, tensor_type, shape, record_left)
                    )
                take = piece[:record_left]
                raw.write_piece(self._file, take)
                piece = piece[len(take) :]
                record_left -= len(take)
                remaining -= len(take)
        if remaining:
            raise MindsftError(
                f"{self.path}: tensor {name!r} of shape {list(shape)} {dtype} needs {nbytes} "
                "bytes, "
                f"got {nbytes - remaining}"
            )
        if nbytes == 0:
            raw.write_piece(self._file, _record_header(name, tensor_type, shape, 0))
        self.names.append(name)


def array_code(array: np.ndarray) -> str:
    """safetensors code of a numpy array (MindSpore's numpy bfloat16 -> BF16)."""
    if array.dtype.name == "bfloat16":
        return "BF16"
    for code, (_, np_type) in raw.TYPES.items():
        if code != "BF16" and array.dtype == np.dtype(np_type):
            return code
    raise MindsftError(f"arrays of dtype {array.dtype} cannot go into a MindSpore checkpoint")


def _ms_bfloat16():
    from mindspore.common import np_dtype  # only MindSpore gives numpy a bfloat16

    return np_dtype.bfloat16


class _Reader:
    """Minimal protobuf wire reader over a file."""

    def __init__(self, f, path):
        self.f, self.path = f, path

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.f.read(1)
            if not b:
                raise MindsftError(f"{self.path}: truncated or not a MindSpore checkpoint")
            result |= (b[0] & 0x7F) << shift
            if not b[0] & 0x80:
                return result
            shift += 7

    def skip(self, wire: int) -> None:
        if wire == 0:
            self.varint()
        elif wire == 1:
            self.f.seek(8, io.SEEK_CUR)
        elif wire == 2:
            self.f.seek(self.varint(), io.SEEK_CUR)
        elif wire == 5:
            self.f.seek(4, io.SEEK_CUR)
        else:
            raise MindsftError(f"{self.path}: not a MindSpore checkpoint (wire type {wire})")


def _int64(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


def _read_value(r: _Reader, end: int):
    """Parse one `Value` record ending at file offset `end`; returns
    (tag, tensor_type, dims, content_offset, content_len)."""
    tag = ttype = None
    dims, content = [], None
    while r.f.tell() < end:
        key = r.varint()
        number, wire = key >> 3, key & 7
        if number == 1 and wire == 2:
            tag = r.f.read(r.varint()).decode()
        elif number == 2 and wire == 2:
            tensor_end = r.varint() + r.f.tell()
            while r.f.tell() < tensor_end:
                key = r.varint()
                number, wire = key >> 3, key & 7
                if number == 1 and wire == 0:
                    dims.append(_int64(r.varint()))
                elif number == 1 and wire == 2:  # packed dims
                    packed_end = r.varint() + r.f.tell()
                    while r.f.tell() < packed_end:
                        dims.append(_int64(r.varint()))
                elif number == 2 and wire == 2:
                    ttype = r.f.read(r.varint()).decode()
                elif number == 3 and wire == 2:
                    n = r.varint()
                    content = (r.f.tell(), n)
                    r.f.seek(n, io.SEEK_CUR)
                else:
                    r.skip(wire)
        elif number == 3:
            raise MindsftError(f"{r.path}: map tensor {tag!r} is not supported")
        else:
            r.skip(wire)
    if tag is None or ttype is None or content is None:
        raise MindsftError(
            f"{r.path}: a record lacks its tag, type or content (corrupt checkpoint)"
        )
    return tag, ttype, dims, content


def scan_ckpt(path) -> list:
    """Every tensor of a checkpoint as a `raw.FileTensor`, reading only the headers."""
    path = Path(path)
    if not path.is_file():
        raise MindsftError(f"{path}: no such checkpoint file")
    size = path.stat().st_size
    entries: dict = {}
    with open(path, "rb") as f:
        r = _Reader(f, path)
        while f.tell() < size:
            start = f.tell()
            if size - start == _CRC_TRAILER_LEN and f.read(7) == _CRC_TRAILER:
                break
            f.seek(start)
            if r.varint() != 0x0A:
                raise MindsftError(
                    f"{path}: not a MindSpore checkpoint (bad record at byte {start})"
                )
            end = r.varint() + f.tell()
            if end > size:
                raise MindsftError(f"{path}: truncated (record at byte {start} runs past the end)")
            tag, ttype, dims, content = _read_value(r, end)
            if f.tell() != end:
                raise MindsftError(f"{path}: corrupt record {tag!r} at byte {start}")
            if ttype not in raw.MS_TO_CODE:
                raise MindsftError(f"{path}: tensor {tag!r} has unsupported type {ttype!r}")
            shape = tuple(dims)
            if tag in entries:  # a continuation slice of a large tensor
                entry = entries[tag]
                if entry.shape != shape or entry.dtype != raw.MS_TO_CODE[ttype]:
                    raise MindsftError(
                        f"{path}: tensor {tag!r} appears twice with different shapes"
                    )
                entry.parts.append(content)
            else:
                entries[tag] = raw.FileTensor(path, tag, raw.MS_TO_CODE[ttype], shape, [content])
    for entry in entries.values():
        expected = raw.nbytes_of(entry.dtype, entry.shape)
        if entry.nbytes != expected:
            raise MindsftError(
                f"{path}: tensor {entry.name!r} of shape {list(entry.shape)} {entry.dtype} "
                f"holds {entry.nbytes} bytes, expected {expected}"
            )
    return list(entries.values())


def read_entry(entry) -> np.ndarray:
    """The array of one `scan_ckpt` entry; bfloat16 as MindSpore's numpy bfloat16 type."""
    array = entry.read()
    return array.view(_ms_bfloat16()) if entry.dtype == "BF16" else array


def iter_ckpt(path):
    """Yield (name, numpy array) for each tensor of a checkpoint, one at a time.
    bfloat16 tensors come as arrays of MindSpore's numpy bfloat16 type."""
    for entry in scan_ckpt(path):
        yield entry.name, read_entry(entry)

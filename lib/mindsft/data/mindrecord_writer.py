"""Writing a MindRecord fast: the one place mindsft uses MindSpore's private
FileWriter attributes (`_writer._writer.write_raw_data`, `_header`).

FileWriter.write_raw_data checks every row against the schema and merges its
columns into one blob in Python, which costs more than tokenizing the row. Our
rows are int32 arrays built to fit the schema, so `MindRecordWriter` writes the
first row through the public write_raw_data (which opens the file, writes the
header and checks that row) and hands every further row, as a blob laid out by
`pack_rows`, straight to the shard writer FileWriter itself calls.
mindspore==2.10 is pinned; tests/data/test_mindrecord_writer.py checks that the
files are byte for byte those the public write_raw_data writes.

Rows of equal size come as one buffer (`pack_rows`, `write_packed`); rows whose
columns vary in length from row to row (a packed row's `actual_seq_len`) as one
blob each (`pack_row`, `write_rows`)."""

import contextlib
import errno
import os
import shutil
from pathlib import Path

import numpy as np

INT32_COLUMN = {"type": "int32", "shape": [-1]}  # the one column type this writer takes


@contextlib.contextmanager
def writing(path):
    """Turn the multi-line RuntimeError MindSpore's MindRecord writer raises when it
    cannot write `path` (a full disk, say) into an OSError naming `path`, which
    `atomic_output` and `mindsft` report on one line."""
    try:
        yield
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or ["?"]
        reason = next((line for line in lines if line.startswith("[ERROR]")), lines[0])
        reason = reason.removeprefix("[ERROR]").strip()
        if "No free disk" in reason:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise OSError(errno.EIO, f"MindRecord writer: {reason}", str(path)) from None


def _row_dtype(names, widths: dict) -> np.dtype:
    """The record layout `pack_rows` writes: per column in name order a big-endian
    8-byte length, then `widths[name]` int32 values (one column: the values only)."""
    if len(names) == 1:
        return np.dtype([("c0", "<i4", (widths[names[0]],))])
    fields = []
    for k, name in enumerate(names):
        fields += [(f"n{k}", ">u8"), (f"c{k}", "<i4", (widths[name],))]
    return np.dtype(fields)


def pack_rows(columns: dict) -> bytes:
    """Rows as MindRecord stores them, one after another: for one column a row's
    bytes; for several, each column's bytes behind its length (8 bytes, big endian)
    in the order of the column names (MindSpore keeps blob fields sorted by name) -
    what MindSpore's ShardWriter._merge_blob makes of a row of int32 arrays.
    `columns`: {name: int32 array (n_rows, row_length)}."""
    names = sorted(columns)
    arrays = [columns[name] for name in names]
    if len(arrays) == 1:
        return np.ascontiguousarray(arrays[0], dtype="<i4").tobytes()
    widths = {name: columns[name].shape[1] for name in names}
    packed = np.empty(len(arrays[0]), dtype=_row_dtype(names, widths))
    for k, col in enumerate(arrays):
        packed[f"n{k}"] = col[0].nbytes if len(col) else 0
        packed[f"c{k}"] = col
    return packed.tobytes()


def unpack_rows(packed: bytes, widths: dict) -> dict:
    """Rows packed by `pack_rows` back to {name: int32 array (n_rows, width)};
    `widths`: {column name: values per row}. The arrays are views of `packed`."""
    names = sorted(widths)
    records = np.frombuffer(packed, dtype=_row_dtype(names, widths))
    return {name: records[f"c{k}"] for k, name in enumerate(names)}


def pack_row(columns: dict) -> bytes:
    """One row whose columns may have any length, as `pack_rows` lays a row out:
    {name: 1-D int32 array} -> bytes."""
    names = sorted(columns)
    if len(names) == 1:
        return np.ascontiguousarray(columns[names[0]], dtype="<i4").tobytes()
    parts = []
    for name in names:
        data = np.ascontiguousarray(columns[name], dtype="<i4").tobytes()
        parts += [len(data).to_bytes(8, "big"), data]
    return b"".join(parts)


def unpack_row(blob: bytes, names) -> dict:
    """One row packed by `pack_rows` with columns `names` back to {name: int32 array}."""
    names = sorted(names)
    if len(names) == 1:
        return {names[0]: np.frombuffer(blob, dtype="<i4")}
    row, pos = {}, 0
    for name in names:
        size = int.from_bytes(blob[pos : pos + 8], "big")
        row[name] = np.frombuffer(blob[pos + 8 : pos + 8 + size], dtype="<i4")
        pos += 8 + size
    return row


class MindRecordWriter:
    """A one-shard MindRecord at `dest` (+ `dest.db`) with `schema`: {column:
    INT32_COLUMN}, its rows packed by `pack_rows`. MindRecord stores its
    own file name in the header, so the files are written under `final_name` in a
    scratch folder beside `dest` and `finish` moves them to `dest`. Use as a context
    manager: the scratch folder goes on leaving it, finished or not."""

    def __init__(self, dest, final_name: str, schema: dict, description: str):
        from mindspore.mindrecord import FileWriter  # heavy import, only where it is needed

        if any(spec != INT32_COLUMN for spec in schema.values()):
            raise ValueError(f"MindRecordWriter writes int32 columns of shape [-1], not {schema}")
        self.dest = Path(dest)
        self.scratch = self.dest.with_name(self.dest.name + ".d")
        self.scratch.mkdir()
        self.path = self.scratch / final_name
        try:
            with writing(self.dest):
                self.writer = FileWriter(str(self.path), shard_num=1, overwrite=True)
                self.writer.add_schema(schema, description)
        except BaseException:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise
        self.columns = sorted(schema)  # the blob field order `pack_rows` follows
        self.opened = False

    def write_packed(self, packed: bytes, n_rows: int) -> None:
        """Write `n_rows` rows of equal size, packed by `pack_rows`."""
        if n_rows == 0:
            return
        size = len(packed) // n_rows
        self.write_rows([packed[k * size : (k + 1) * size] for k in range(n_rows)])

    def write_rows(self, blobs: list) -> None:
        """Write rows given one blob each (`pack_row`), of any sizes."""
        if not blobs:
            return
        if not self.opened:
            self._open(blobs[0])
            blobs = blobs[1:]
        if blobs:
            with writing(self.dest):
                self.writer._writer._writer.write_raw_data({}, blobs, True, False)

    def _open(self, first: bytes) -> None:
        """Write the first row through the public API, and check that MindSpore
        merges blobs in the order `pack_rows` packs them."""
        if self.writer._header.blob_fields != self.columns:
            raise RuntimeError(f"MindRecord blob fields {self.writer._header.blob_fields}")
        with writing(self.dest):
            self.writer.write_raw_data([unpack_row(first, self.columns)])
        self.opened = True

    def finish(self) -> None:
        """Commit the file and move it (and its .db) to `dest`."""
        with writing(self.dest):
            self.writer.commit()
        os.replace(self.path, self.dest)
        os.replace(f"{self.path}.db", f"{self.dest}.db")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        shutil.rmtree(self.scratch, ignore_errors=True)

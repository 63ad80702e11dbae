"""Batches from a qa MindRecord (`input_ids`, `labels`: int32, seq_length + 1 long)
or a wiki one (`input_ids` only: every token is a target, so its labels are its
input_ids) in a reproducible order: seeded per-epoch shuffle, rank sharding, and
exact resume from a batch index. A packed qa MindRecord (`preprocess --packing
True`) is known by its third column, `actual_seq_len` (format: data/packing.py);
its rows' boundaries are checked on reading and travel with each batch."""

from pathlib import Path

import numpy as np
from mindspore.mindrecord import FileReader

from mindsft.data.packing import BOUNDARIES, check_packed_row
from mindsft.errors import MindsftError

COLUMNS = ("input_ids", "labels")
# what `mindsft preprocess --dataset_type KIND` writes: the columns a kind is known by
KINDS = {"qa": COLUMNS, "wiki": ("input_ids",)}


def describe_kind(kind: str) -> str:
    """'a qa MindRecord (input_ids, labels)': how messages name a kind."""
    return f"a {kind} MindRecord ({', '.join(KINDS[kind])})"


def require_kind(path, kind: str, needed: str, needed_by: str) -> None:
    """A MindRecord of `kind` where `needed_by` (e.g. "--run_mode train") needs
    `needed` is one line saying which was given and which is needed."""
    if kind != needed:
        raise MindsftError(
            f"{path}: {describe_kind(kind)}; {needed_by} needs {describe_kind(needed)}, "
            f"as `mindsft preprocess --dataset_type {needed}` writes"
        )


def _kind(schema: dict, path) -> str:
    """qa when the schema has labels, wiki when it has input_ids only."""
    if "input_ids" not in schema:
        raise MindsftError(f"{path}: column(s) input_ids missing (has {', '.join(sorted(schema))})")
    return "qa" if "labels" in schema else "wiki"


def _open(path) -> FileReader:
    path = Path(path)
    if not path.is_file():
        raise MindsftError(f"{path}: no such MindRecord file")
    try:
        return FileReader(str(path), num_consumer=1)
    except (RuntimeError, ValueError, OSError) as exc:  # missing .db, bad header, ...
        raise MindsftError(
            f"{path}: not a readable MindRecord ({str(exc).splitlines()[0]})"
        ) from None


def mindrecord_kind(path) -> str:
    """ "qa" or "wiki", from the MindRecord's schema alone (no rows are read)."""
    reader = _open(path)
    try:
        return _kind(reader.schema(), path)
    finally:
        reader.close()


def _columns(schema: dict, kind: str, path) -> tuple:
    """The columns to read: the kind's, and `actual_seq_len` where a qa file is packed."""
    columns = KINDS[kind] + ((BOUNDARIES,) if kind == "qa" and BOUNDARIES in schema else ())
    for c in columns:
        if schema[c].get("type") not in ("int32", "int64") or schema[c].get("shape") != [-1]:
            raise MindsftError(f"{path}: column {c} is {schema[c]}, expected int32 of shape [-1]")
    return columns


def _read_rows(reader, columns: tuple, path) -> dict:
    """Every row's columns as int32 arrays, each row checked as it comes."""
    rows = {c: [] for c in columns}
    k = 0
    try:
        for k, row in enumerate(reader.get_next()):
            for c in columns:
                rows[c].append(np.asarray(row[c], dtype=np.int32))
            _check_row(rows, k, path)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise MindsftError(f"{path}: row {k}: unreadable ({reason})") from None
    return rows


def _check_row(rows: dict, k: int, path) -> None:
    """Row k (just read) has the first row's length in every token column, and a
    packed row's boundaries add up."""
    length = len(rows["input_ids"][0])
    for c in (c for c in COLUMNS if c in rows):
        if len(rows[c][k]) != length:
            raise MindsftError(
                f"{path}: row {k}: {c} has {len(rows[c][k])} tokens, the rows before it "
                f"{length}; rows have different lengths, expected one seq_length + 1"
            )
    if BOUNDARIES in rows:
        check_packed_row(rows[BOUNDARIES][k], rows["labels"][k], f"{path}: row {k}")


def read_mindrecord(path) -> dict:
    """All rows of a qa or wiki MindRecord as {"input_ids", "labels"}: int32
    (rows, seq + 1), and "kind"; a wiki MindRecord's labels are its input_ids. A
    packed one also has "actual_seq_len": an object array of int32 arrays, the
    cumulative sample ends of each row."""
    reader = _open(path)
    try:
        schema = reader.schema()
        kind = _kind(schema, path)
        columns = _columns(schema, kind, path)
        rows = _read_rows(reader, columns, path)
    finally:
        reader.close()
    if not rows["input_ids"]:
        raise MindsftError(f"{path}: the MindRecord holds no rows")
    data = {c: np.stack(rows[c]) for c in columns if c != BOUNDARIES}
    data.setdefault("labels", data["input_ids"])  # wiki: every token is a target
    if BOUNDARIES in rows:
        data[BOUNDARIES] = np.empty(len(rows[BOUNDARIES]), dtype=object)
        data[BOUNDARIES][:] = rows[BOUNDARIES]
    return {**data, "kind": kind}


class MindRecordBatches:
    """Iterate numpy batches {"input_ids", "labels"}: int32 (B, seq_length + 1), and
    for a packed MindRecord (`packed` True) "actual_seq_len": B arrays of sample ends.

    Each epoch's order is a permutation seeded by (seed, epoch) when `shuffle`
    (`set_epoch(e)` selects the epoch), else file order. The order is cut to a
    multiple of `num_shards` so every shard has as many rows; shard i takes rows
    i, i + n, i + 2n, ... of it. `start_batch` skips that many batches of the
    first pass only (exact resume inside an epoch); later passes start at 0.
    `len()` is the number of batches in a full epoch of this shard. `num_samples`
    keeps only the file's first rows. `kind` is "qa" or "wiki" (see read_mindrecord).
    Rows are held in memory (a 52k-row Alpaca set at 512 tokens is about 210 MB)."""

    def __init__(
        self,
        path,
        batch_size,
        *,
        shard_id=0,
        num_shards=1,
        shuffle=False,
        seed=0,
        drop_remainder=True,
        start_batch=0,
        num_samples=None,
    ):
        if batch_size < 1 or num_shards < 1 or not 0 <= shard_id < num_shards or start_batch < 0:
            raise MindsftError(
                f"{path}: bad batching (batch_size {batch_size}, shard {shard_id} of {num_shards}, "
                f"start_batch {start_batch})"
            )
        self.path = Path(path)
        data = read_mindrecord(path)
        self.kind = data.pop("kind")
        self.data = {c: column[:num_samples] for c, column in data.items()}
        self.packed = BOUNDARIES in self.data
        self.rows = len(self.data["input_ids"])
        self.seq_length = self.data["input_ids"].shape[1] - 1
        self.batch_size, self.shard_id, self.num_shards = batch_size, shard_id, num_shards
        self.shuffle, self.seed, self.drop_remainder = shuffle, seed, drop_remainder
        self.start_batch = start_batch
        self.epoch = 0
        if self.rows < num_shards or (drop_remainder and self.rows // num_shards < batch_size):
            raise MindsftError(
                f"{path}: {self.rows} rows are too few for {num_shards} shard(s) of batches of "
                f"{batch_size}"
            )

    def set_epoch(self, epoch: int):
        """Choose the epoch whose shuffled order the next pass follows."""
        self.epoch = epoch

    def shard_rows(self) -> np.ndarray:
        """Row indices this shard reads in the current epoch, in order."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.rows)
        else:
            order = np.arange(self.rows)
        usable = self.rows // self.num_shards * self.num_shards
        return order[:usable][self.shard_id :: self.num_shards]

    def __len__(self) -> int:
        per_shard = self.rows // self.num_shards
        full, partial = divmod(per_shard, self.batch_size)
        return full + int(partial > 0 and not self.drop_remainder)

    def __iter__(self):
        rows = self.shard_rows()
        first, self.start_batch = self.start_batch, 0
        for b in range(first, len(self)):
            idx = rows[b * self.batch_size : (b + 1) * self.batch_size]
            yield {c: column[idx] for c, column in self.data.items()}

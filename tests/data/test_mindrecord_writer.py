"""The MindRecord writer that uses MindSpore's private shard writer against the
public FileWriter.write_raw_data: the files must be the same, byte for byte."""

from itertools import pairwise

import numpy as np
import pytest
from mindsft.data.mindrecord_writer import (
    MindRecordWriter,
    pack_row,
    pack_rows,
    unpack_row,
    unpack_rows,
)
from mindspore.mindrecord import FileWriter

INT32 = {"type": "int32", "shape": [-1]}
SCHEMAS = {  # one column (wiki), two (qa), three (a packed row's sample boundaries beside)
    "wiki": {"input_ids": INT32},
    "qa": {"input_ids": INT32, "labels": INT32},
    "packed": {"input_ids": INT32, "labels": INT32, "boundaries": INT32},
}


def public_write(path, schema, description, rows, cuts):
    """The same rows through FileWriter.write_raw_data, one call per chunk."""
    columns = list(schema)
    writer = FileWriter(str(path), shard_num=1)
    writer.add_schema(schema, description)
    for start, end in pairwise(cuts):
        part = [c[start:end] for c in rows]
        writer.write_raw_data([dict(zip(columns, r, strict=True)) for r in zip(*part, strict=True)])
    writer.commit()


@pytest.mark.parametrize("name", SCHEMAS)
def test_packed_rows_write_the_bytes_filewriter_writes(tmp_path, name):
    schema = SCHEMAS[name]
    rng = np.random.default_rng(0)
    rows = [rng.integers(-100, 32000, size=(37, 17), dtype=np.int32) for _ in schema]
    cuts = [0, 10, 37]  # two calls, as chunks arrive
    for folder in ("public", "final"):
        (tmp_path / folder).mkdir()
    public_write(tmp_path / "public" / "x.mindrecord", schema, name, rows, cuts)
    with MindRecordWriter(tmp_path / "final" / "x.mindrecord", "x.mindrecord", schema, name) as out:
        for start, end in pairwise(cuts):
            part = {c: a[start:end] for c, a in zip(schema, rows, strict=True)}
            out.write_packed(pack_rows(part), end - start)
        out.finish()
    for suffix in ("", ".db"):
        public_bytes = (tmp_path / "public" / f"x.mindrecord{suffix}").read_bytes()
        assert (tmp_path / "final" / f"x.mindrecord{suffix}").read_bytes() == public_bytes
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == [
        "x.mindrecord",
        "x.mindrecord.db",
    ]  # the scratch folder is gone


def test_a_row_unpacks_to_its_columns_packed_in_name_order():
    rng = np.random.default_rng(1)
    columns = {c: rng.integers(-100, 32000, size=(3, 9), dtype=np.int32) for c in SCHEMAS["packed"]}
    packed = pack_rows(columns)
    size = len(packed) // 3
    row = packed[size : 2 * size]
    assert row[8:44] == columns["boundaries"][1].tobytes()  # "boundaries" sorts first
    unpacked = unpack_row(row, list(columns))
    assert set(unpacked) == set(columns)
    for column, array in columns.items():
        np.testing.assert_array_equal(unpacked[column], array[1])


def test_rows_of_varying_sizes_write_the_bytes_filewriter_writes(tmp_path):
    """A packed qa row's `actual_seq_len` has one entry per sample: rows differ in size."""
    schema = {"input_ids": INT32, "labels": INT32, "actual_seq_len": INT32}
    rng = np.random.default_rng(2)
    rows = [
        {
            "input_ids": rng.integers(0, 32000, 17, dtype=np.int32),
            "labels": rng.integers(-100, 32000, 17, dtype=np.int32),
            "actual_seq_len": np.cumsum(rng.integers(1, 5, k)).astype(np.int32),
        }
        for k in (1, 3, 2, 4, 1)
    ]
    (tmp_path / "public").mkdir()
    writer = FileWriter(str(tmp_path / "public" / "x.mindrecord"), shard_num=1)
    writer.add_schema(schema, "packed")
    writer.write_raw_data(rows[:2])
    writer.write_raw_data(rows[2:])
    writer.commit()
    with MindRecordWriter(tmp_path / "x.mindrecord", "x.mindrecord", schema, "packed") as out:
        out.write_rows([pack_row(r) for r in rows[:2]])
        out.write_rows([pack_row(r) for r in rows[2:]])
        out.finish()
    for suffix in ("", ".db"):
        public_bytes = (tmp_path / "public" / f"x.mindrecord{suffix}").read_bytes()
        assert (tmp_path / f"x.mindrecord{suffix}").read_bytes() == public_bytes


def test_rows_packed_together_unpack_to_their_columns():
    rng = np.random.default_rng(3)
    columns = {c: rng.integers(-100, 32000, size=(4, 6), dtype=np.int32) for c in ("b", "a")}
    back = unpack_rows(pack_rows(columns), {"a": 6, "b": 6})
    for column, array in columns.items():
        np.testing.assert_array_equal(back[column], array)
    one = {"a": columns["a"]}
    np.testing.assert_array_equal(unpack_rows(pack_rows(one), {"a": 6})["a"], columns["a"])


def test_a_failed_write_leaves_no_scratch_folder_and_other_types_are_refused(tmp_path):
    with (
        pytest.raises(RuntimeError),
        MindRecordWriter(tmp_path / "x.mindrecord", "x.mindrecord", SCHEMAS["qa"], "qa"),
    ):
        raise RuntimeError("a worker failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="int32"):
        MindRecordWriter(
            tmp_path / "y.mindrecord", "y.mindrecord", {"text": {"type": "string"}}, "qa"
        )

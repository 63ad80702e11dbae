"""MindRecordBatches on MindRecords written here with MindSpore's own FileWriter."""

import numpy as np
import pytest
from mindsft.data.reader import MindRecordBatches
from mindsft.errors import MindsftError
from mindspore.mindrecord import FileWriter

SCHEMA = {"input_ids": {"type": "int32", "shape": [-1]}, "labels": {"type": "int32", "shape": [-1]}}


def write_mindrecord(path, rows, seq_length=8, schema=SCHEMA, lengths=None):
    """`rows` records whose input_ids start with the row number (to identify them)."""
    writer = FileWriter(str(path), shard_num=1, overwrite=True)
    writer.add_schema(schema, "qa")
    records = []
    for i in range(rows):
        n = (lengths[i] if lengths else seq_length) + 1
        ids = np.full(n, 5, np.int32)
        ids[0] = i
        records.append({c: ids.copy() for c in schema})
    writer.write_raw_data(records)
    writer.commit()
    return path


def row_numbers(batches):
    return [int(r) for b in batches for r in b["input_ids"][:, 0]]


@pytest.fixture
def dataset(tmp_path):
    return write_mindrecord(tmp_path / "d.mindrecord", rows=23)


def test_batches_are_int32_seq_plus_one_in_file_order(dataset):
    batches = MindRecordBatches(dataset, 4)
    assert batches.seq_length == 8 and len(batches) == 5  # 23 rows, remainder dropped
    items = list(batches)
    assert all(b["input_ids"].shape == (4, 9) and b["labels"].dtype == np.int32 for b in items)
    assert row_numbers(items) == list(range(20))
    keep = MindRecordBatches(dataset, 4, drop_remainder=False)
    assert len(keep) == 6 and row_numbers(keep) == list(range(23))


def test_shards_are_disjoint_strided_and_equal_in_size(dataset):
    shards = [
        row_numbers(MindRecordBatches(dataset, 2, shard_id=i, num_shards=3)) for i in range(3)
    ]
    assert shards[1] == [1, 4, 7, 10, 13, 16]  # rows i, i+n, ... (7 per shard, last batch dropped)
    assert {len(s) for s in shards} == {6}
    assert not set(shards[0]) & set(shards[1]) and not set(shards[1]) & set(shards[2])


def test_shuffle_is_seeded_and_changes_with_the_epoch(dataset):
    a = MindRecordBatches(dataset, 5, shuffle=True, seed=7)
    b = MindRecordBatches(dataset, 5, shuffle=True, seed=7)
    first = row_numbers(a)
    assert first == row_numbers(b) and first != list(range(20))
    a.set_epoch(1)
    second = row_numbers(a)
    assert second != first
    assert row_numbers(MindRecordBatches(dataset, 5, shuffle=True, seed=8)) != first
    sharded = [
        MindRecordBatches(dataset, 1, shuffle=True, seed=7, shard_id=i, num_shards=2)
        for i in (0, 1)
    ]
    for s in sharded:
        s.set_epoch(1)
    whole = MindRecordBatches(dataset, 1, shuffle=True, seed=7)
    whole.set_epoch(1)
    order = row_numbers(whole)[:22]
    assert row_numbers(sharded[0]) == order[0::2] and row_numbers(sharded[1]) == order[1::2]


def test_start_batch_resumes_exactly_where_the_first_pass_stopped(dataset):
    full = MindRecordBatches(dataset, 3, shuffle=True, seed=1)
    full.set_epoch(2)
    expected = row_numbers(full)
    resumed = MindRecordBatches(dataset, 3, shuffle=True, seed=1, start_batch=4)
    resumed.set_epoch(2)
    assert row_numbers(resumed) == expected[12:]
    assert row_numbers(resumed) == expected  # the next pass is a whole epoch again
    assert len(resumed) == 7


def test_wrong_columns_or_ragged_rows_are_one_line_naming_the_file(tmp_path):
    other = {"text": {"type": "int32", "shape": [-1]}, "labels": {"type": "int32", "shape": [-1]}}
    bad = write_mindrecord(tmp_path / "cols.mindrecord", 4, schema=other)
    with pytest.raises(MindsftError, match="cols.mindrecord.*input_ids"):
        MindRecordBatches(bad, 1)
    ragged = write_mindrecord(tmp_path / "ragged.mindrecord", 3, lengths=[8, 8, 6])
    with pytest.raises(MindsftError, match="ragged.mindrecord.*different lengths"):
        MindRecordBatches(ragged, 1)
    with pytest.raises(MindsftError, match="absent.mindrecord"):
        MindRecordBatches(tmp_path / "absent.mindrecord", 1)
    with pytest.raises(MindsftError, match="too few"):
        MindRecordBatches(write_mindrecord(tmp_path / "small.mindrecord", 3), 2, num_shards=2)


def test_a_wiki_mindrecord_trains_every_token_and_num_samples_keeps_the_first_rows(tmp_path):
    from mindsft.data.reader import mindrecord_kind, require_kind

    wiki = write_mindrecord(tmp_path / "w.mindrecord", 6, schema={"input_ids": SCHEMA["input_ids"]})
    batches = MindRecordBatches(wiki, 2, num_samples=4)
    assert batches.kind == mindrecord_kind(wiki) == "wiki" and batches.rows == 4
    batch = next(iter(batches))
    np.testing.assert_array_equal(batch["labels"], batch["input_ids"])  # labels = input_ids
    assert row_numbers(batches) == [0, 1, 2, 3]
    qa = write_mindrecord(tmp_path / "q.mindrecord", 2)
    assert MindRecordBatches(qa, 1).kind == "qa"
    with pytest.raises(
        MindsftError,
        match=r"q.mindrecord: a qa MindRecord \(input_ids, labels\); "
        r"--run_mode train needs a wiki MindRecord \(input_ids\)",
    ):
        require_kind(qa, "qa", "wiki", "--run_mode train")


PACKED_SCHEMA = {**SCHEMA, "actual_seq_len": {"type": "int32", "shape": [-1]}}


def write_packed(path, rows):
    """Packed rows (ends, labels or None) of 9 tokens: ids 5, labels as given or IGNORE."""
    writer = FileWriter(str(path), shard_num=1, overwrite=True)
    writer.add_schema(PACKED_SCHEMA, "qa")
    records = []
    for ends, labels in rows:
        labels = np.full(9, -100, np.int32) if labels is None else np.asarray(labels, np.int32)
        records.append(
            {
                "input_ids": np.full(len(labels), 5, np.int32),
                "labels": labels,
                "actual_seq_len": np.asarray(ends, np.int32),
            }
        )
    writer.write_raw_data(records)
    writer.commit()
    return path


def test_a_packed_mindrecord_is_known_by_its_boundaries_column(tmp_path):
    path = write_packed(tmp_path / "p.mindrecord", [([4, 9], None), ([3], None), ([2, 5, 8], None)])
    batches = MindRecordBatches(path, 2, drop_remainder=False)
    assert batches.packed and batches.seq_length == 8
    first, second = list(batches)
    assert [e.tolist() for e in first["actual_seq_len"]] == [[4, 9], [3]]
    assert [e.tolist() for e in second["actual_seq_len"]] == [[2, 5, 8]]
    plain = write_mindrecord(tmp_path / "d.mindrecord", rows=2)
    assert not MindRecordBatches(plain, 1).packed


@pytest.mark.parametrize(
    "bad, message",
    [
        (([5, 4], None), r"actual_seq_len \[5, 4\] are not increasing"),
        (([4, 10], None), "within the row's 9 tokens"),
        (([], None), "actual_seq_len"),
        (([0, 4], None), "are not increasing"),
        (([4], [-100] * 6 + [7, -100, -100]), "labels after the last sample end"),
        (([4], [-100] * 8), "different lengths"),
    ],
)
def test_packed_rows_whose_boundaries_do_not_add_up_name_the_row(tmp_path, bad, message):
    path = write_packed(tmp_path / "bad.mindrecord", [([4, 9], None), ([9], None), bad])
    with pytest.raises(MindsftError, match=f"bad.mindrecord: row 2: .*{message}"):
        MindRecordBatches(path, 1)

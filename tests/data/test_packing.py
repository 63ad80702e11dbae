"""`preprocess --packing True`: whole samples in input order, MindFormers'
`actual_seq_len` boundaries, the samples exactly the rows written without packing."""

import hashlib
import json

import numpy as np
import pytest
from mindsft.cli import main
from mindsft.data.mindrecord_writer import unpack_row
from mindsft.data.packing import Packer, sample_lengths, sample_positions
from mindspore.mindrecord import FileReader

IGNORE = -100
COLUMNS = ["actual_seq_len", "input_ids", "labels"]


def unpacked_rows(lengths, length, seed=0):
    """qa-like rows (n, length): BOS, tokens, EOS, pad 0; labels IGNORE on BOS and a prompt."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), length), np.int32)
    labels = np.full_like(ids, IGNORE)
    for k, n in enumerate(lengths):
        ids[k, :n] = np.concatenate([[1], rng.integers(3, 500, max(n - 2, 0)), [2]])[:n]
        labels[k, n // 2 : n] = ids[k, n // 2 : n]
    return ids, labels


def packed_rows(blobs):
    return [unpack_row(blob, COLUMNS) for blob in blobs]


def test_whole_samples_fill_rows_in_order_and_never_split():
    ids, labels = unpacked_rows([5, 4, 3, 9, 2, 9, 1], 9)
    packer = Packer(9, pad_id=0)
    rows = packed_rows(packer.add(ids[:4], labels[:4]) + packer.add(ids[4:], labels[4:]))
    rows += packed_rows(packer.finish())
    # next-fit: 5+4 | 3 (9 does not fit) | 9 (full row, alone) | 2 (9 does not fit) | 9 | 1
    assert [r["actual_seq_len"].tolist() for r in rows] == [[5, 9], [3], [9], [2], [9], [1]]
    assert packer.rows == 6 and packer.samples == 7 and packer.tokens == 33
    np.testing.assert_array_equal(rows[0]["input_ids"], np.concatenate([ids[0, :5], ids[1, :4]]))
    np.testing.assert_array_equal(rows[1]["input_ids"], np.concatenate([ids[2, :3], [0] * 6]))
    assert (rows[1]["labels"][3:] == IGNORE).all()
    for row in rows:  # every sample's first label is IGNORE
        starts = np.concatenate([[0], row["actual_seq_len"][:-1]])
        assert (row["labels"][starts] == IGNORE).all()


def test_sample_lengths_and_positions_follow_the_boundaries():
    ids, _ = unpacked_rows([5, 9, 1], 9)
    assert sample_lengths(ids, 0).tolist() == [5, 9, 1]
    segment, position, last = sample_positions(np.array([3, 7]), 8)
    assert segment.tolist() == [0, 0, 0, 1, 1, 1, 1, 2]
    assert position.tolist() == [0, 1, 2, 0, 1, 2, 3, 0]
    assert np.flatnonzero(last).tolist() == [2, 6]


def read_all(path, columns):
    reader = FileReader(str(path))
    try:
        return [{c: r[c] for c in columns} for r in reader.get_next()]
    finally:
        reader.close()


@pytest.fixture(scope="module")
def conversation_file(alpaca_fixture, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "conversation.json"
    main(["alpaca-converter", "--data_path", str(alpaca_fixture), "--output_path", str(out)])
    return out


def preprocess(conversation, tokenizer, out, seq_length, *extra):
    argv = ["preprocess", "--dataset_type", "qa", "--input_glob", str(conversation)]
    argv += ["--model_file", str(tokenizer), "--seq_length", str(seq_length)]
    assert main([*argv, "--output_file", str(out), *extra]) == 0
    return json.loads(out.with_name(out.name + ".stats.json").read_text())


def test_packed_fixture_holds_the_unpacked_rows_samples_in_order(
    conversation_file, llama2_tokenizer, tmp_path
):
    """At seq_length 256 the fixture has samples longer than a row: cut as without packing."""
    plain = preprocess(conversation_file, llama2_tokenizer, tmp_path / "plain.mindrecord", 256)
    stats = preprocess(
        conversation_file, llama2_tokenizer, tmp_path / "p.mindrecord", 256, "--packing", "True"
    )
    unpacked = read_all(tmp_path / "plain.mindrecord", COLUMNS[1:])
    packed = read_all(tmp_path / "p.mindrecord", COLUMNS)
    k = 0
    for row in packed:
        assert len(row["input_ids"]) == len(row["labels"]) == 257
        start = 0
        for end in row["actual_seq_len"]:
            sample = unpacked[k]
            n = end - start
            assert (sample["input_ids"][n:] == 0).all() and (sample["labels"][n:] == IGNORE).all()
            np.testing.assert_array_equal(row["input_ids"][start:end], sample["input_ids"][:n])
            np.testing.assert_array_equal(row["labels"][start:end], sample["labels"][:n])
            start, k = end, k + 1
        assert (row["input_ids"][start:] == 0).all() and (row["labels"][start:] == IGNORE).all()
    assert k == 999 and stats["samples"] == 999 and stats["rows"] == len(packed) < 999
    assert stats["packing"] is True and plain["rows_truncated"] == stats["rows_truncated"] > 0
    for key in ("tokens", "trained_tokens", "rows_fully_masked"):
        assert stats[key] == plain[key], key
    efficiency = stats["tokens"] / (stats["rows"] * 257)
    assert stats["packing_efficiency"] == round(efficiency, 4)
    assert efficiency > stats["tokens"] / (999 * 257)  # the unpacked rows' share of real tokens


def test_packing_is_deterministic_and_the_same_with_workers(
    conversation_file, llama2_tokenizer, tmp_path
):
    digests = set()
    for name, workers in (("a", 1), ("b", 1), ("c", 2)):
        (tmp_path / name).mkdir()
        out = tmp_path / name / "p.mindrecord"
        preprocess(
            conversation_file, llama2_tokenizer, out, 512, "--packing", "True",
            "--workers", str(workers),
        )  # fmt: skip
        rows = read_all(out, COLUMNS)
        h = hashlib.sha256()
        for row in rows:
            for c in COLUMNS:
                h.update(np.ascontiguousarray(row[c], "<i4").tobytes())
        digests.add(h.hexdigest())
        if name == "b":
            assert out.read_bytes() == (tmp_path / "a" / "p.mindrecord").read_bytes()
    assert len(digests) == 1


def test_packing_wiki_is_one_line_and_exit_2(llama2_tokenizer, tmp_path, capsys):
    src = tmp_path / "wiki.txt"
    src.write_text("Some text.\n\nMore text.\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["preprocess", "--dataset_type", "wiki", "--input_glob", str(src)]
    argv += ["--model_file", str(llama2_tokenizer), "--seq_length", "64"]
    argv += ["--output_file", str(out_dir / "w.mindrecord"), "--packing", "True"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "wiki" in err and "already contiguous" in err
    assert list(out_dir.iterdir()) == []

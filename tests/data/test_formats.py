"""The record shapes and file layouts `preprocess` reads (formats.py): ShareGPT,
OpenAI messages, alpaca, in a JSON list or JSON Lines, all give the rows of the
same conversation."""

import json

import numpy as np
import pytest
from mindsft.cli import main
from mindsft.data.formats import is_json_lines, iter_json_lines, to_conversation
from mindsft.errors import MindsftError

CHATS = [
    ("Be brief.", [("Hi", "Hello!"), ("What is 7 times 8?", "56")]),
    (None, [("Name a colour.", "Blue")]),
]


def sharegpt(system, rounds, human="human", gpt="gpt"):
    turns = [{"from": "system", "value": system}] if system is not None else []
    for q, a in rounds:
        turns += [{"from": human, "value": q}, {"from": gpt, "value": a}]
    return {"conversations": turns}


def openai(system, rounds, top_level_system=False):
    messages = []
    if system is not None and not top_level_system:
        messages.append({"role": "system", "content": system})
    for q, a in rounds:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    record = {"messages": messages}
    if system is not None and top_level_system:
        record["system"] = system
    return record


SHAPES = {
    "sharegpt human/gpt": lambda s, r: sharegpt(s, r),
    "sharegpt user/assistant": lambda s, r: sharegpt(s, r, "user", "assistant"),
    "openai": lambda s, r: openai(s, r),
    "openai, top-level system": lambda s, r: openai(s, r, top_level_system=True),
}


def read_rows(path):
    from mindspore.mindrecord import FileReader

    reader = FileReader(str(path))
    try:
        rows = list(reader.get_next())
    finally:
        reader.close()
    return np.stack([r["input_ids"] for r in rows]), np.stack([r["labels"] for r in rows])


def preprocess(tmp_path, source, tokenizer, *flags):
    out = tmp_path / (source.name + ".mindrecord")
    argv = ["preprocess", "--dataset_type", "qa", "--input_glob", str(source)]
    argv += ["--model_file", str(tokenizer), "--seq_length", "96", "--output_file", str(out)]
    assert main([*argv, *flags]) == 0
    return read_rows(out)


@pytest.fixture(scope="module")
def tok(llama2_tokenizer):
    from mindsft.data.tokenizer import SentencePieceTokenizer

    return SentencePieceTokenizer(llama2_tokenizer)


@pytest.mark.parametrize("template", ["llama-2", "vicuna_v1.1"])
def test_every_shape_gives_the_rows_of_the_same_conversation(tok, template):
    from mindsft.data.rows import qa_chunk

    rows = {}
    for shape, make in SHAPES.items():
        records = [make(system, rounds) for system, rounds in CHATS]
        rows[shape] = qa_chunk(tok, records, 0, "f.json", 97, template)
    reference = rows.pop("sharegpt human/gpt")
    for shape, (ids, labels, stats) in rows.items():
        assert np.array_equal(ids, reference[0]) and np.array_equal(labels, reference[1]), shape
        assert stats == reference[2], shape


def test_json_lists_and_json_lines_hold_the_same_records(tmp_path):
    from mindsft.data.inputs import iter_records

    records = [make(system, rounds) for make in SHAPES.values() for system, rounds in CHATS]
    lines = "\n".join(json.dumps(r) for r in records) + "\n"
    layouts = {
        "list.json": (json.dumps(records), None),
        "lines.jsonl": ("\n" + lines + "\n\n", list(range(2, 2 + len(records)))),
        "lines.json": (lines, list(range(1, 1 + len(records)))),  # recognised by content
    }
    for name, (text, numbers) in layouts.items():
        (tmp_path / name).write_text(text)
        read = list(iter_records(tmp_path / name))
        assert [r for r, _ in read] == records, name
        assert [n for _, n in read] == (numbers or [None] * len(records)), name


def test_preprocess_reads_openai_json_lines_in_a_template(tmp_path, llama2_tokenizer, tok):
    from mindsft.data.rows import qa_chunk

    records = [openai(system, rounds) for system, rounds in CHATS]
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    ids, labels = preprocess(tmp_path, source, llama2_tokenizer, "--template", "llama-2")
    want = qa_chunk(tok, records, 0, "x", 97, "llama-2")
    assert np.array_equal(ids, want[0]) and np.array_equal(labels, want[1])
    stats = json.loads((tmp_path / "chat.jsonl.mindrecord.stats.json").read_text())
    assert stats["template"] == "llama-2" and stats["train_on_prompt"] is False
    assert stats["rows"] == 2 and stats["trained_tokens"] == int((labels != -100).sum())


def test_a_system_message_reaches_the_prompt_and_is_masked(tok):
    from mindsft.data.rows import qa_chunk

    ids, labels, _ = qa_chunk(tok, [openai(*CHATS[0])], 0, "f.json", 97, "llama-2")
    system = tok.encode_batch(["<<SYS>>\nBe brief.\n<</SYS>>"])[0]
    n = len(system)
    at = [i for i in range(len(ids[0])) if ids[0][i : i + n].tolist() == system]
    assert len(at) == 1 and (labels[0][at[0] : at[0] + n] == -100).all()


def test_alpaca_records_become_the_converter_s_conversation():
    record = {"instruction": "Add 2 and 3.", "input": "", "output": "5"}
    conv = to_conversation(record, "f: record 0")
    assert conv.system is None and conv.where == "f: record 0"
    assert conv.turns[0]["value"].endswith("### Instruction:\nAdd 2 and 3.\n\n### Response:")
    assert conv.turns[1] == {"from": "gpt", "value": "5"}


@pytest.mark.parametrize(
    "record, message",
    [
        (sharegpt(None, [("q", "a")], "human", "bot"), "turn 1 has the unknown role 'bot'"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "x"}]},
            "message 1 has the unknown role 'tool'",
        ),
        (
            {"conversations": [{"from": "human", "value": "q"}, {"from": "system", "value": "s"}]},
            "turn 1 is from 'system', which only the first turn may be",
        ),
        ({"messages": [{"role": "user"}]}, "message 0 must be an object with 'role' and 'content'"),
        ({"messages": []}, "messages must be a non-empty list"),
        ({"conversations": [], "id": 7}, "(id 7): turns must be a non-empty list"),
        ({"system": 3, "messages": [{"role": "user", "content": "q"}]}, "'system' is int"),
        ({"text": "plain"}, "expected an object with 'conversations' (ShareGPT), 'messages'"),
        ({"instruction": "i"}, "missing 'output'"),
    ],
)
def test_bad_records_are_one_line_naming_the_record(record, message):
    with pytest.raises(MindsftError) as bad:
        to_conversation(record, "data.json: record 4")
    assert str(bad.value).startswith("data.json: record 4") and message in str(bad.value)


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("a.jsonl", "[1]", True),
        ("a.json", '{"a": 1}\n{"a": 2}\n', True),
        ("a.json", '{"a": 1}\n\n', False),  # one object: not a list, and said so
        ("a.json", '[{"a": 1},\n{"a": 2}]', False),
        ("a.json", '{\n "a": 1\n}\n', False),
        ("a.txt", '{"a": 1}\n{"a": 2}', True),
    ],
)
def test_json_lines_are_recognised_by_suffix_or_content(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    assert is_json_lines(tmp_path / name) is expected


def test_json_lines_name_the_line_that_is_not_json(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,}\n')
    read = iter_json_lines(path)
    assert next(read) == ({"a": 1}, 1)
    with pytest.raises(MindsftError, match=r"a.jsonl: line 3: not valid JSON \(.* at column 9\)"):
        next(read)
    path.write_text("\n \n")
    with pytest.raises(MindsftError, match="a.jsonl: empty dataset"):
        list(iter_json_lines(path))

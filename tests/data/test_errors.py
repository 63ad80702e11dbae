"""Bad input through the real command: exit 2, one line naming the file, the record
and what is wrong, and nothing left behind in the output folder."""

import json

import pytest
from mindsft.cli import main

GOOD_CONV = {
    "id": "1",
    "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
}


def run_failing(capsys, argv, out_dir, expected_in_message):
    before = sorted(p.name for p in out_dir.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for part in expected_in_message:
        assert part in err, err
    assert sorted(p.name for p in out_dir.iterdir()) == before  # no output, no temporaries
    return err


def write(path, content):
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", ["not valid JSON"]),
        ({"instruction": "x"}, ["expected a list at the top level of the JSON"]),
        ([], ["empty dataset"]),
        ([{"instruction": "x", "input": ""}], ["record 0", "missing 'output'"]),
        (
            [{"instruction": "i", "output": "o"}, {"output": "o"}],
            ["record 1", "missing 'instruction'"],
        ),
        ([{"instruction": "i", "input": 5, "output": "o"}], ["record 0", "'input' is int"]),
        ([{"instruction": "i", "output": None}], ["record 0", "'output' is NoneType"]),
        (["just a string"], ["record 0", "expected an object"]),
    ],
)
def test_alpaca_converter_rejects_bad_records(tmp_path, capsys, content, expected):
    src = write(tmp_path / "alpaca.json", content)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["alpaca-converter", "--data_path", str(src), "--output_path", str(out_dir / "c.json")]
    run_failing(capsys, argv, out_dir, [str(src), *expected])


def preprocess_argv(src, tokenizer, out, seq_length=64, dataset_type="qa"):
    return [
        "preprocess",
        "--dataset_type",
        dataset_type,
        "--input_glob",
        str(src),
        "--model_file",
        str(tokenizer),
        "--seq_length",
        str(seq_length),
        "--output_file",
        str(out),
        "--workers",
        "1",
    ]


def preprocess_fails(capsys, tmp_path, src, tokenizer, expected, **kwargs):
    """Run `mindsft preprocess` into an empty folder; it must fail cleanly."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = preprocess_argv(src, tokenizer, out_dir / "x.mindrecord", **kwargs)
    run_failing(capsys, argv, out_dir, expected)


@pytest.mark.parametrize(
    "content, expected",
    [
        ("[{]", ["not valid JSON"]),
        ({"conversations": []}, ["expected a list at the top level of the JSON"]),
        ([], ["empty dataset"]),
        ([GOOD_CONV, {"id": "b7", "turns": []}], ["record 1", "'conversations'"]),
        (
            [GOOD_CONV, {"id": "z9", "conversations": [{"from": "human", "value": "q"}] * 2}],
            ["record 1 (id 'z9')", "do not alternate human/gpt", "turn 1"],
        ),
        (
            [{"id": "3", "conversations": [{"from": "human", "value": ["q"]}]}],
            ["record 0 (id '3')", "value is list"],
        ),
    ],
)
def test_preprocess_rejects_bad_conversations(
    tmp_path, capsys, llama2_tokenizer, content, expected
):
    src = write(tmp_path / "conversation.json", content)
    preprocess_fails(capsys, tmp_path, src, llama2_tokenizer, [str(src), *expected])


def test_a_bad_record_late_in_the_file_leaves_no_partial_mindrecord(
    tmp_path, capsys, llama2_tokenizer, monkeypatch
):
    import mindsft.data.preprocess as pre

    monkeypatch.setattr(pre, "CHUNK_RECORDS", 4)  # rows are written before the bad one is seen
    bad = {"id": "bad", "conversations": [{"from": "gpt", "value": "a"}] * 2}
    src = write(tmp_path / "conversation.json", [GOOD_CONV] * 10 + [bad])
    preprocess_fails(capsys, tmp_path, src, llama2_tokenizer, ["record 10 (id 'bad')"])


def test_a_file_that_is_not_a_sentencepiece_model_is_rejected(tmp_path, capsys):
    src = write(tmp_path / "conversation.json", [GOOD_CONV])
    fake = write(tmp_path / "tokenizer.model", "this is not a model")
    preprocess_fails(capsys, tmp_path, src, fake, [str(fake), "not a SentencePiece model"])


def test_seq_length_below_16_is_rejected(tmp_path, capsys, llama2_tokenizer):
    src = write(tmp_path / "conversation.json", [GOOD_CONV])
    expected = ["seq_length 15", "at least 16"]
    preprocess_fails(capsys, tmp_path, src, llama2_tokenizer, expected, seq_length=15)


def test_a_seq_length_beyond_mindsfts_ceiling_is_refused_before_any_work(
    tmp_path, capsys, llama2_tokenizer
):
    src = write(tmp_path / "conversation.json", [GOOD_CONV])
    expected = ["seq_length 100000000", "above mindsft's ceiling of 131072 tokens a row"]
    preprocess_fails(capsys, tmp_path, src, llama2_tokenizer, expected, seq_length=100_000_000)


def test_seq_length_is_bounded_by_the_models_positions(tmp_path, capsys, llama2_tokenizer):
    """From a config.json beside the tokenizer, or from --config (which wins)."""
    src = write(tmp_path / "conversation.json", [GOOD_CONV])
    folder = tmp_path / "model"
    folder.mkdir()
    tokenizer = folder / "tokenizer.model"
    tokenizer.write_bytes(llama2_tokenizer.read_bytes())
    write(folder / "config.json", {"max_position_embeddings": 64})
    expected = ["seq_length 65", f"at most 64 positions ({folder / 'config.json'})"]
    preprocess_fails(capsys, tmp_path, src, tokenizer, expected, seq_length=65)
    yaml_config = write(
        tmp_path / "run.yaml",
        "model: {model_config: {seq_length: 32, "
        "hidden_size: 64, num_layers: 1, num_heads: 4, vocab_size: 32000}}\n",
    )
    argv = preprocess_argv(src, tokenizer, tmp_path / "out" / "y.mindrecord", seq_length=48)
    run_failing(capsys, [*argv, "--config", str(yaml_config)], tmp_path / "out", ["at most 32"])
    out = tmp_path / "x.mindrecord"
    assert main(preprocess_argv(src, tokenizer, out, seq_length=64)) == 0


def test_wiki_text_shorter_than_one_row_is_an_empty_dataset(tmp_path, capsys, llama2_tokenizer):
    src = write(tmp_path / "wiki.txt", " = Heading = \n\nA few words only.\n")
    expected = [str(src), "empty dataset"]
    preprocess_fails(capsys, tmp_path, src, llama2_tokenizer, expected, dataset_type="wiki")


def test_over_long_rows_are_truncated_and_counted_not_rejected(tmp_path, llama2_tokenizer):
    long = {
        "id": "1",
        "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "word " * 200}],
    }
    src = write(tmp_path / "conversation.json", [long, GOOD_CONV])
    out = tmp_path / "x.mindrecord"
    assert main(preprocess_argv(src, llama2_tokenizer, out, seq_length=16)) == 0
    stats = json.loads((tmp_path / "x.mindrecord.stats.json").read_text())
    assert (
        stats["rows"] == 2 and stats["rows_truncated"] == 2
    )  # the 38-token system prompt alone is longer


@pytest.mark.parametrize(
    "name, content, expected",
    [
        (
            "chat.json",
            [GOOD_CONV, {"id": "s2", "conversations": [{"from": "bot", "value": "x"}]}],
            [
                "record 1 (id 's2')",
                "turn 0 has the unknown role 'bot'",
                "known: human, user, gpt, assistant, system",
            ],
        ),
        (
            "chat.jsonl",
            '{"messages": [{"role": "user", "content": "q"}]}\n\n'
            '{"messages": [{"role": "robot", "content": "q"}]}\n',
            ["chat.jsonl: line 3", "message 0 has the unknown role 'robot'"],
        ),
        ("chat.jsonl", '{"messages": []}\n{"a": }\n', ["chat.jsonl: line 2: not valid JSON"]),
    ],
)
def test_preprocess_names_the_record_and_its_unknown_role(
    tmp_path, capsys, llama2_tokenizer, name, content, expected
):
    src = write(tmp_path / name, content)
    preprocess_fails(capsys, tmp_path, src, llama2_tokenizer, [str(src), *expected])


@pytest.mark.parametrize(
    "flags, expected",
    [
        (
            ["--template", "llama2"],
            ["template 'llama2' is not a FastChat", "close matches: llama-2"],
        ),
        (["--template", "rwkv"], ["'rwkv' cannot be masked reliably", "templates that can: "]),
        (["--dataset_type", "wiki", "--train_on_prompt", "True"], ["apply to qa data"]),
    ],
)
def test_preprocess_refuses_templates_it_cannot_mask(
    tmp_path, capsys, llama2_tokenizer, flags, expected
):
    src = write(tmp_path / "conversation.json", [GOOD_CONV])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = preprocess_argv(src, llama2_tokenizer, out_dir / "x.mindrecord")
    run_failing(capsys, [*argv, *flags], out_dir, expected)

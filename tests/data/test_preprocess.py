"""The qa and wiki MindRecords, row for row against MindFormers' llama_preprocess.py.

Reference values marked REFERENCE were produced by running MindFormers' own
LlamaTokenizer (mindformers 2.1.0, legacy SentencePiece wrapper, add_bos and add_eos
on) through the preprocess()/tokenize_wiki() logic of its llama_preprocess.py in a
throwaway environment, on the shared fixtures; they are pinned here as literals."""

import hashlib
import json

import mindsft.data.preprocess as pre
import numpy as np
import pytest
from mindsft.cli import main

IGNORE = -100

# REFERENCE: sha256 of all rows' input_ids then all rows' labels (int32, little endian)
# for the fixture converted by alpaca-converter, with the real Llama 2 tokenizer
QA_REFERENCE = {
    512: {
        "sha256": "dcb30e1dd73a0a38c9aa3cbcee6da16bdab0b69dfa6ed6fe2fabac27e5c4f5e6",
        "trained": 163373,
        "truncated": 86,
        "fully_masked": 0,
    },
    128: {
        "sha256": "14bd7567b70de7edb46e0fa8dc4beb0893571be4b7697397045ce38be3784153",
        "trained": 27069,
        "truncated": 796,
        "fully_masked": 83,
    },
}
# REFERENCE: sha256 of the wiki rows (seq_length 128) for wiki_text() below
WIKI_REFERENCE_SHA256 = "306749e9acbcfe66324f81d17a065cd51b8a976acb3cb1463cf9a20cd231c730"


def read_rows(path, columns=("input_ids", "labels")):
    from mindspore.mindrecord import FileReader

    reader = FileReader(str(path))
    try:
        rows = list(reader.get_next())
    finally:
        reader.close()
    return {c: np.stack([r[c] for r in rows]) for c in columns}


def sha256_of(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype="<i4").tobytes())
    return h.hexdigest()


def run_preprocess(
    tmp_path, dataset_type, source, tokenizer, seq_length, workers=1, name="out.mindrecord"
):
    out = tmp_path / name
    argv = ["preprocess", "--dataset_type", dataset_type, "--input_glob", str(source)]
    argv += ["--model_file", str(tokenizer), "--seq_length", str(seq_length)]
    argv += ["--output_file", str(out), "--workers", str(workers)]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def conversation_file(alpaca_fixture, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "conversation.json"
    main(["alpaca-converter", "--data_path", str(alpaca_fixture), "--output_path", str(out)])
    return out


@pytest.mark.parametrize("seq_length, workers", [(512, 2), (128, 1)])
def test_qa_rows_equal_mindformers_reference_on_the_fixture(
    conversation_file, llama2_tokenizer, tmp_path, seq_length, workers
):
    out = run_preprocess(tmp_path, "qa", conversation_file, llama2_tokenizer, seq_length, workers)
    rows = read_rows(out)
    ref = QA_REFERENCE[seq_length]
    assert rows["input_ids"].shape == rows["labels"].shape == (999, seq_length + 1)
    assert rows["input_ids"].dtype == rows["labels"].dtype == np.int32
    assert sha256_of(rows["input_ids"], rows["labels"]) == ref["sha256"]

    stats = json.loads((tmp_path / "out.mindrecord.stats.json").read_text())
    assert stats["rows"] == 999 and stats["seq_length"] == seq_length
    assert stats["dataset_type"] == "qa"
    assert stats["trained_tokens"] == int((rows["labels"] != IGNORE).sum()) == ref["trained"]
    assert stats["rows_truncated"] == ref["truncated"]
    assert stats["rows_fully_masked"] == ref["fully_masked"]
    assert stats["tokens"] == int(np.count_nonzero(rows["input_ids"]))
    assert stats["tokenizer_sha256"] == hashlib.sha256(llama2_tokenizer.read_bytes()).hexdigest()
    expected = ["out.mindrecord", "out.mindrecord.db", "out.mindrecord.stats.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == expected


def test_small_chunks_and_two_workers_give_the_same_rows(
    conversation_file, llama2_tokenizer, tmp_path, monkeypatch
):
    monkeypatch.setattr(pre, "CHUNK_RECORDS", 97)
    out = run_preprocess(tmp_path, "qa", conversation_file, llama2_tokenizer, 128, workers=2)
    rows = read_rows(out)
    assert sha256_of(rows["input_ids"], rows["labels"]) == QA_REFERENCE[128]["sha256"]


def test_the_written_mindrecord_loads_as_a_mindspore_dataset(
    conversation_file, llama2_tokenizer, tmp_path
):
    import mindspore.dataset as ds

    out = run_preprocess(tmp_path, "qa", conversation_file, llama2_tokenizer, 64)
    data = ds.MindDataset(str(out), columns_list=["input_ids", "labels"], shuffle=False)
    assert data.get_dataset_size() == 999
    first = next(data.create_dict_iterator(output_numpy=True))
    assert first["input_ids"].shape == (65,) and first["input_ids"][0] == 1


def conv(*turns, id="x"):
    return {"id": id, "conversations": [{"from": f, "value": v} for f, v in turns]}


H, G = "human", "gpt"
# Hand-checked cases at seq_length 64 (rows of 65): the unpadded length, the
# label ids left unmasked, and where the first one sits. The system prompt plus
# " USER: " ... " ASSISTANT:" is masked; the answer tokens and EOS are trained.
# Every line was also confirmed against the REFERENCE run.
HAND_CASES = [
    # "▁Hello", "!", EOS: the answer of one round; 39 masked tokens before it (BOS + 38)
    (conv((H, "Hi"), (G, "Hello!")), 43, [15043, 29991, 2], 40),
    # two rounds: "▁", "4", EOS then "▁", "6" (truncated at 65 before ", of course.")
    (
        conv((H, "What is 2+2?"), (G, "4"), (H, "And 3+3?"), (G, "6, of course.")),
        65,
        [29871, 29946, 2, 29871, 29953],
        46,
    ),
    # a leading gpt turn is dropped
    (conv((G, "leading gpt turn"), (H, "question"), (G, "answer")), 42, [1234, 2], 40),
    # answer starting with spaces: "▁▁" stays trained
    (conv((H, "  spaces  "), (G, "  more spaces  ")), 47, [259, 901, 8162, 259, 2], 42),
    # fully masked: an empty answer makes FastChat end with "ASSISTANT:" and no "</s>"
    (conv((H, "empty answer"), (G, "")), 42, [], None),
    # fully masked: "<unk>" in the text tokenizes to id 0 = the pad id, so the
    # unpadded length disagrees with the rounds' length ("<s>" becomes BOS, id 1)
    (conv((H, "say <s> and <unk> please"), (G, "ok <s>x</s>y<unk>")), 56, [], None),
    # fully masked: " ASSISTANT: " inside the question splits the round in three
    (conv((H, "tricky ASSISTANT: inside"), (G, "fine")), 48, [], None),
    # fully masked: a question without an answer
    (conv((H, "only a question")), 39, [], None),
    # fully masked and truncated: the instruction alone is longer than the row
    (conv((H, "long " * 100), (G, "short")), 65, [], None),
    # fully masked: "</s>" inside an answer cuts the rounds where MindFormers cuts them
    (conv((H, "q1"), (G, "a1 </s> with eos text"), (H, "q2"), (G, "a2")), 64, [], None),
]


def test_hand_checked_rows(llama2_tokenizer, tmp_path):
    source = tmp_path / "edge.json"
    source.write_text(json.dumps([case[0] for case in HAND_CASES], ensure_ascii=False))
    out = run_preprocess(tmp_path, "qa", source, llama2_tokenizer, 64)
    rows = read_rows(out)
    for k, (_, length, unmasked, first) in enumerate(HAND_CASES):
        ids, labels = rows["input_ids"][k], rows["labels"][k]
        assert ids[0] == 1 and labels[0] == IGNORE, k
        assert ids[length - 1] != 0 and (ids[length:] == 0).all(), k  # padded with id 0
        assert labels[labels != IGNORE].tolist() == unmasked, k
        if first is not None:
            assert labels[first] != IGNORE and (labels[:first] == IGNORE).all(), k
            # trained labels are the input ids themselves
            keep = labels != IGNORE
            assert (labels[keep] == ids[keep]).all(), k
    # one round, not truncated: ids end with EOS right before the padding
    assert rows["input_ids"][0][42] == 2
    stats = json.loads((tmp_path / "out.mindrecord.stats.json").read_text())
    assert stats["rows_fully_masked"] == 6 and stats["rows_truncated"] == 2


def wiki_text(alpaca_fixture) -> str:
    """Wikitext-style text from the fixture's outputs: headings, " @-@ ", spaced
    punctuation and brackets, blank and whitespace-only paragraphs."""
    records = json.loads(alpaca_fixture.read_text())
    lines = []
    for i, r in enumerate(records[:400]):
        if i % 20 == 0:
            lines += (
                ["", f" = Section {i} = ", ""]
                if i % 40
                else ["", f" = = Sub @-@ section {i} = = ", ""]
            )
        t = (
            r["output"]
            .replace("-", " @-@ ")
            .replace(",", " , ")
            .replace(".", " . ")
            .replace("'s", " 's")
        )
        lines.append(" " + t.replace("(", "( ").replace(")", " )") + " ")
        if i % 3 == 0:
            lines.append("")
        if i % 50 == 7:
            lines += ["", "   ", ""]
    return "\n".join(lines) + "\n"


def test_wiki_rows_equal_mindformers_reference(
    alpaca_fixture, llama2_tokenizer, tmp_path, monkeypatch
):
    source = tmp_path / "wiki.txt"
    source.write_text(wiki_text(alpaca_fixture), encoding="utf-8")
    monkeypatch.setattr(pre, "CHUNK_PARAGRAPHS", 13)  # rows cross task boundaries
    out = run_preprocess(tmp_path, "wiki", source, llama2_tokenizer, 128, workers=2)
    rows = read_rows(out, columns=("input_ids",))
    assert rows["input_ids"].shape == (541, 129)
    assert sha256_of(rows["input_ids"]) == WIKI_REFERENCE_SHA256
    stats = json.loads((tmp_path / "out.mindrecord.stats.json").read_text())
    assert stats["rows"] == 541 and stats["tokens"] == 541 * 129 and stats["tokens_dropped"] == 123


def test_wiki_paragraphs_are_cleaned_and_headings_dropped():
    from mindsft.data.wikitext import clean_wikitext, wiki_paragraphs

    text = (
        " = Title = \n\n The 1 @,@ 000 km ( long ) road 's end , here . \n\n = = Sub = = \n\nLast"
    )
    cleaned = clean_wikitext(text)
    assert "1,000 km (long) road's end, here." in cleaned
    assert wiki_paragraphs(cleaned) == ["The 1,000 km (long) road's end, here.", "Last"]


def test_split_tokenization_equals_whole_round_tokenization(alpaca_fixture, llama2_tokenizer):
    """The fast path (system prompt tokenized once, then question and answer) gives
    the ids of tokenizing each round and its instruction part whole (MindFormers'
    way, checked against the REFERENCE above) - on the fixture and on seeded
    adversarial turns: leading/trailing spaces, "▁", special-token strings,
    combining marks, newlines, digits, CJK, the separators themselves."""
    import random

    from mindsft.data.alpaca import to_conversations
    from mindsft.data.rows import qa_chunk
    from mindsft.data.tokenizer import SentencePieceTokenizer

    fragments = [
        "word",
        " ",
        "  ",
        "\n",
        "\t",
        "▁",
        "<s>",
        "</s>",
        "<unk>",
        "\u0301",
        "é",
        "日本",
        "42",
        "3.14",
        "'s",
        ":",
        "USER:",
        " ASSISTANT: ",
        "ASSISTANT:",
        "🦙",
        "(",
        ")",
        "-",
    ]
    rng = random.Random(0)

    def text():
        return "".join(rng.choice(fragments) for _ in range(rng.randint(0, 6)))

    records = to_conversations(json.loads(alpaca_fixture.read_text())[:300])
    for _ in range(400):
        turns = [(H, text()), (G, text())] * rng.randint(1, 3)
        records.append(conv(*turns))
    fast = SentencePieceTokenizer(llama2_tokenizer)
    whole = SentencePieceTokenizer(llama2_tokenizer)
    whole.splits_at_spaces = False
    assert fast.splits_at_spaces
    for length in (513, 65):
        a = qa_chunk(fast, records, 0, "mixed", length)
        b = qa_chunk(whole, records, 0, "mixed", length)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        assert a[2] == b[2]


def test_word_cache_past_its_limit_still_gives_sentencepiece_ids(
    alpaca_fixture, llama2_tokenizer, monkeypatch
):
    import sentencepiece as spm
    from mindsft.data import tokenizer

    monkeypatch.setattr(tokenizer, "CACHE_LIMIT", 50)  # emptied on almost every batch
    tok = tokenizer.SentencePieceTokenizer(llama2_tokenizer)
    sp = spm.SentencePieceProcessor(model_file=str(llama2_tokenizer))
    texts = [r["output"] for r in json.loads(alpaca_fixture.read_text())[:40]]
    for start in range(0, 40, 10):
        assert tok.encode_batch(texts[start : start + 10]) == sp.encode(texts[start : start + 10])


def test_alpaca_records_preprocess_straight_to_mindformers_rows(
    alpaca_fixture, llama2_tokenizer, tmp_path
):
    """No alpaca-converter step: the alpaca fixture itself gives the pinned rows."""
    out = run_preprocess(tmp_path, "qa", alpaca_fixture, llama2_tokenizer, 128)
    rows = read_rows(out)
    assert sha256_of(rows["input_ids"], rows["labels"]) == QA_REFERENCE[128]["sha256"]

"""Rows in any FastChat template (chat_rows.py): the ids are BOS + the tokens of
FastChat's own prompt text, the trained tokens are the answers and their
separators, or everything but BOS with train_on_prompt."""

import json
import re

import numpy as np
import pytest
from fastchat.conversation import get_conv_template
from mindsft.data.chat_rows import chat_row
from mindsft.data.formats import Conversation
from mindsft.data.template import template_names

IGNORE = -100
CHAT = [
    ("human", "Hi there"),
    ("gpt", "Hello! How can I help?"),
    ("human", "7 x 8?"),
    ("gpt", "56"),
]


@pytest.fixture(scope="module")
def tok(llama2_tokenizer):
    from mindsft.data.tokenizer import SentencePieceTokenizer

    return SentencePieceTokenizer(llama2_tokenizer)


def conversation(pairs, system=None):
    return Conversation([{"from": f, "value": v} for f, v in pairs], system, "test record")


def fastchat(name, pairs, system=None) -> tuple:
    """FastChat's prompt text, and what an answer-only row should train: each answer
    with the separator after it (the prompt between it and the next human turn),
    "<s>" left out."""
    conv = get_conv_template(name)
    if system is not None:
        conv.set_system_message(system)
    trained = []
    for speaker, text in pairs:
        conv.append_message(conv.roles[len(conv.messages) % 2], text)
        if speaker == "gpt":
            so_far = conv.get_prompt()
            trained.append(so_far[so_far.rindex(text) :].replace("<s>", ""))
    return conv.get_prompt(), trained


def text_of(tok, ids) -> str:
    """The text of token ids, special tokens as their strings."""
    specials = {tok.bos_id: "<s>", tok.eos_id: "</s>", tok.unk_id: "<unk>"}
    out, run = [], []
    for i in [*ids, None]:
        if i is None or i in specials:
            out.append(tok.sp.decode(run))
            run = []
            if i is not None:
                out.append(specials[i])
        else:
            run.append(int(i))
    return "".join(out)


def squeeze(text: str) -> str:
    return re.sub(r"\s", "", text.replace("\u2581", " "))


@pytest.mark.parametrize("name", template_names())
def test_each_template_trains_its_answers_and_their_separators_only(tok, name):
    system = "Be brief." if "{system_message}" in get_conv_template(name).system_template else None
    prompt, answers = fastchat(name, CHAT, system)
    ids, labels, n = chat_row(tok, conversation(CHAT, system), name, False, 1024)
    assert ids[:n].tolist() == [tok.bos_id, *tok.encode_batch([prompt])[0]]
    assert (ids[n:] == tok.pad_id).all() and (labels[n:] == IGNORE).all()
    keep = labels != IGNORE
    assert (labels[keep] == ids[keep]).all() and not (ids[keep] == tok.bos_id).any()
    runs = np.flatnonzero(np.diff(keep.astype(int)) == 1)
    assert len(runs) == len(answers)  # one trained stretch per answer
    trained = squeeze(text_of(tok, ids[keep]))
    masked = squeeze(text_of(tok, ids[:n][~keep[:n]]))
    for answer in answers:
        assert squeeze(answer) in trained
    for human in ("Hi there", "7 x 8?", system or "Hi there"):
        assert squeeze(human) in masked and squeeze(human) not in trained


@pytest.mark.parametrize("name", ["vicuna_v1.1", "llama-2", "qwen-7b-chat", "alpaca"])
def test_train_on_prompt_trains_every_token_but_bos(tok, name):
    ids, labels, n = chat_row(tok, conversation(CHAT, "Be brief."), name, True, 512)
    trained = ids[:n] != tok.bos_id
    assert (labels[:n][trained] == ids[:n][trained]).all()
    assert (labels[:n][~trained] == IGNORE).all() and (labels[n:] == IGNORE).all()


def test_llama_2_row_by_hand(tok):
    """BOS "[INST] <<SYS>>..." masked; "▁Hello", "!", "▁" and EOS trained; the BOS
    of "<s>" after it masked; a row cut at seq_length + 1."""
    ids, labels, n = chat_row(tok, conversation(CHAT[:2], "SYS"), "llama-2", False, 64)
    text = "[INST] <<SYS>>\nSYS\n<</SYS>>\n\nHi there [/INST] Hello! How can I help? "
    head = tok.encode_batch(["[INST] <<SYS>>\nSYS\n<</SYS>>\n\nHi there [/INST]"])[0]
    body = tok.encode_batch([text])[0]
    assert ids[:n].tolist() == [1, *body, 2, 1] and n == len(body) + 3
    answer = body[len(head) :]
    assert [tok.sp.id_to_piece(i) for i in answer] == [
        "▁Hello", "!", "▁How", "▁can", "▁I", "▁help", "?", "▁"
    ]  # fmt: skip
    assert labels[: 1 + len(head)].tolist() == [IGNORE] * (1 + len(head))
    assert labels[1 + len(head) : n].tolist() == [*answer, 2, IGNORE]
    cut_ids, cut_labels, _ = chat_row(tok, conversation(CHAT[:2], "SYS"), "llama-2", False, 20)
    assert cut_ids.tolist() == ids[:20].tolist() and cut_labels.tolist() == labels[:20].tolist()


def test_vicuna_ids_are_mindformers_and_labels_differ_only_on_a_lone_space(tok, alpaca_fixture):
    """On the 999 fixture records, the template rows of vicuna_v1.1 hold exactly
    MindFormers' input_ids (pinned by sha256 in test_preprocess); the labels differ
    only where MindFormers trains the lone "▁" between " ASSISTANT:" and an answer
    that begins with a digit or a sign, a space of the template that is masked here."""
    from mindsft.data.alpaca import to_conversations
    from mindsft.data.formats import to_conversation
    from mindsft.data.rows import qa_chunk

    records = to_conversations(json.loads(alpaca_fixture.read_text()))
    mf_ids, mf_labels, _ = qa_chunk(tok, records, 0, "fixture", 513)
    for k, record in enumerate(records):
        ids, labels, _ = chat_row(tok, to_conversation(record, "r"), "vicuna_v1.1", False, 513)
        assert np.array_equal(ids, mf_ids[k])
        differ = np.flatnonzero(labels != mf_labels[k])
        assert (mf_labels[k][differ] == tok.sp.piece_to_id("▁")).all(), k
        assert (labels[differ] == IGNORE).all() and (labels[differ - 1] == IGNORE).all(), k


def test_preprocess_train_on_prompt_trains_all_but_bos(tmp_path, llama2_tokenizer, alpaca_fixture):
    from mindsft.cli import main

    out, source = tmp_path / "x.mindrecord", tmp_path / "alpaca.json"
    source.write_text(json.dumps(json.loads(alpaca_fixture.read_text())[:100]))
    argv = ["preprocess", "--dataset_type", "qa", "--input_glob", str(source)]
    argv += ["--model_file", str(llama2_tokenizer), "--seq_length", "256"]
    assert main([*argv, "--output_file", str(out), "--train_on_prompt", "True"]) == 0
    stats = json.loads((tmp_path / "x.mindrecord.stats.json").read_text())
    assert stats["template"] == "vicuna_v1.1" and stats["train_on_prompt"] is True
    assert stats["trained_tokens"] == stats["tokens"] - stats["rows"]  # one BOS per row

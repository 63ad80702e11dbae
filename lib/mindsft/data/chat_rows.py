"""qa rows for any FastChat template, and for `--train_on_prompt`.

`input_ids` is BOS followed by the tokens of FastChat's prompt text (`get_prompt()`
of the whole conversation; special-token strings such as "</s>" and "<s>" become
their ids, as MindFormers' tokenizer makes them), padded with the pad id or cut to
seq_length + 1. `labels` copy `input_ids` where a token is trained and are IGNORE
elsewhere. A token is trained when a character it covers lies in a trained part of
the text (a token that spans the end of a separator and the next role tag is
trained: the model learns to emit it to end its turn):
- by default, each answer's text and the separator the template writes after it
  (so the model learns to end its turn); the system prompt, role tags and human
  turns are masked;
- with train_on_prompt, all of it - system prompt, role tags, human turns and
  answers (LLaMA-Factory's `train_on_prompt`).
BOS is never a target, wherever the template puts it ("<s>" in llama-2's separator).

For vicuna_v1.1 these ids are MindFormers' (each round's tokens and EOS are the
tokens of the text up to and including its "</s>"); rows.py keeps MindFormers' own
masking for that template when prompts are not trained."""

import numpy as np

from mindsft.data.formats import Conversation
from mindsft.data.template import check_turns, render

IGNORE_INDEX = -100


def _answer_bytes(prompt: str, spans: list) -> np.ndarray:
    """A bool per UTF-8 byte of `prompt`: inside an answer's text or its separator."""
    inside = np.zeros(len(prompt.encode("utf-8")), dtype=bool)
    chars = nbytes = 0
    for span in spans:
        if span.speaker != "gpt":
            continue
        begin = nbytes + len(prompt[chars : span.text_start].encode("utf-8"))
        nbytes = begin + len(prompt[span.text_start : span.end].encode("utf-8"))
        chars = span.end
        inside[begin:nbytes] = True
    return inside


def trained_tokens(tok, conv: Conversation, template: str, train_on_prompt: bool) -> tuple:
    """(ids, trained) of one conversation in `template`: its tokens without BOS, and
    a bool per token."""
    turns = check_turns(conv.turns, conv.where)
    prompt, spans = render(template, turns, conv.system, conv.where)
    ids, begin, end = tok.encode_spans(prompt)
    if train_on_prompt:
        trained = np.ones(len(ids), dtype=bool)
    else:
        covered = np.concatenate([[0], np.cumsum(_answer_bytes(prompt, spans))])
        trained = covered[end] > covered[begin]  # some byte of the token is in an answer
    return ids, trained & (ids != tok.bos_id)


def chat_row(tok, conv: Conversation, template: str, train_on_prompt: bool, length: int):
    """(input_ids, labels, unpadded length) of one conversation; `length` is
    seq_length + 1."""
    ids, trained = trained_tokens(tok, conv, template, train_on_prompt)
    n = len(ids) + 1
    input_ids = np.full(length, tok.pad_id, dtype=np.int32)
    labels = np.full(length, IGNORE_INDEX, dtype=np.int32)
    input_ids[0] = tok.bos_id
    input_ids[1:n] = ids[: length - 1]
    labels[1:n] = np.where(trained, ids, IGNORE_INDEX)[: length - 1]
    return input_ids, labels, n

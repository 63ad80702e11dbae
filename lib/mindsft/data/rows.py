"""MindRecord rows from conversations (qa) and from text (wiki), as MindFormers'
`llama_preprocess.py` builds them, and the statistics of what was built. Records of
any shape formats.py reads; other templates than vicuna_v1.1, and trained prompts,
are built by chat_rows.py.

qa: the vicuna_v1.1 prompt is cut into rounds at `</s>` (up to the first empty
one); `input_ids` is BOS, then each round's tokens followed by EOS, padded with the
pad id or truncated to seq_length + 1. `labels` copy `input_ids` with IGNORE on BOS,
on each round's instruction part, on everything after the last round that splits
once at " ASSISTANT: ", and on the whole row when those rounds do not account for
every non-pad token (MindFormers' `cur_len != total_len`, checked only on rows that
were not truncated). MindFormers masks `len(tokenize(instruction + " ASSISTANT: ")) - 1`
tokens of a round: its instruction part ends in a lone "▁" token that the full round
merges into the answer.

Each text is tokenized once. Where the tokenizer segments independently on the two
sides of a space that follows a non-space (`splits_at_spaces`), a round
`P + " " + H + " ASSISTANT: " + Y` (P = the system prompt and "USER:", or "USER:")
is tokenized as T(P) + T(H + " ASSISTANT:") + T(Y), with T(P) computed once, and the
instruction length is the length of the first two; otherwise the round and its
instruction part are each tokenized whole. Rows made only of such split rounds are
put together for a whole chunk at once by numpy (`_SplitRows`); the others row by
row (`qa_row`)."""

import dataclasses

import numpy as np

from mindsft.data.chat_rows import IGNORE_INDEX, chat_row
from mindsft.data.formats import Conversation, to_conversation
from mindsft.data.template import (
    ASSISTANT_SEP,
    ROUND_SEP,
    SYSTEM_PREFIX,
    TEMPLATE_NAME,
    USER_PREFIX,
    conversation_prompt,
)

ASSISTANT_END = ASSISTANT_SEP.rstrip(" ")  # " ASSISTANT:"


@dataclasses.dataclass
class Stats:
    """What a MindRecord holds, written beside it as `<output_file>.stats.json`."""

    rows: int = 0
    tokens: int = 0  # real (unpadded) tokens in the rows
    trained_tokens: int = 0  # label positions that are not IGNORE (wiki: seq_length per row)
    rows_truncated: int = 0  # rows longer than seq_length + 1, cut
    rows_fully_masked: int = 0  # rows whose labels are all IGNORE
    tokens_dropped: int = 0  # wiki: the tail shorter than one row

    def add(self, other: "Stats") -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


# ---- qa


def prompt_rounds(prompt: str) -> list:
    """MindFormers' rounds: the prompt cut at `</s>`, up to the first empty piece."""
    rounds = []
    for text in prompt.split(ROUND_SEP):
        if text == "":
            break
        rounds.append(text)
    return rounds


def _starts_plainly(text: str, tok) -> bool:
    """Non-empty, and neither whitespace nor a special-token string at its start."""
    return (
        bool(text)
        and not text[0].isspace()
        and text[0] != "▁"
        and not tok.starts_with_special(text)
    )


class _RoundPlan:
    """The texts one round needs tokenized, and how its ids and its instruction
    length are put together from their tokens."""

    def __init__(self, text: str, instructed: bool, tok):
        self.prefix = None
        if not instructed:  # after MindFormers' loop stopped: ids only
            self.texts = [text]
            return
        instruction, answer = text.split(ASSISTANT_SEP)
        if tok.splits_at_spaces and _starts_plainly(answer, tok):
            for prefix in (SYSTEM_PREFIX, USER_PREFIX):
                human = instruction[len(prefix) + 1 :]
                if instruction.startswith(prefix + " ") and _starts_plainly(human, tok):
                    self.prefix = prefix
                    self.texts = [human + ASSISTANT_END, answer]
                    return
        self.texts = [text, instruction + ASSISTANT_SEP]

    def assemble(self, encoded: list, tok) -> tuple:
        """(round ids, masked instruction length or None)."""
        if self.prefix is not None:
            head = tok.cached_ids(self.prefix)
            human, answer = encoded
            return head + human + answer, len(head) + len(human)
        if len(encoded) == 1:
            return encoded[0], None
        return encoded[0], len(encoded[1]) - 1


def record_plans(conv: Conversation, tok) -> list:
    plans, instructed = [], True
    for text in prompt_rounds(conversation_prompt(conv.turns, conv.where, conv.system)):
        instructed = instructed and text.count(ASSISTANT_SEP) == 1
        plans.append(_RoundPlan(text, instructed, tok))
    return plans


def qa_row(rounds: list, length: int, tok) -> tuple:
    """One row from its rounds' (ids, instruction length or None); `length` is
    seq_length + 1. Returns (input_ids, labels, unpadded length)."""
    ids = [tok.bos_id]
    for round_ids, _ in rounds:
        ids += round_ids
        ids.append(tok.eos_id)
    n = len(ids)
    input_ids = np.full(length, tok.pad_id, dtype=np.int32)
    input_ids[: min(n, length)] = ids[:length]
    labels = input_ids.copy()
    labels[0] = IGNORE_INDEX
    cur = 1
    for round_ids, instruction_len in rounds:
        if instruction_len is None:
            break
        labels[cur : cur + instruction_len] = IGNORE_INDEX
        cur += len(round_ids) + 1
    labels[cur:] = IGNORE_INDEX
    if cur < length and cur != n - ids.count(tok.pad_id):
        labels[:] = IGNORE_INDEX
    return input_ids, labels, n


def qa_chunk(
    tok,
    records: list,
    start: int,
    source,
    length: int,
    template: str = TEMPLATE_NAME,
    train_on_prompt: bool = False,
    lines: list | None = None,
) -> tuple:
    """Rows for records[start:start + len(records)] of `source` (any shape formats.py
    reads; `lines`: their line numbers in a JSON Lines file) in FastChat `template`:
    int32 arrays (n, length) of input_ids and labels, and their Stats."""
    convs = [
        to_conversation(r, f"{source}: " + (f"line {lines[k]}" if lines else f"record {start + k}"))
        for k, r in enumerate(records)
    ]
    input_ids = np.empty((len(records), length), dtype=np.int32)
    labels = np.empty_like(input_ids)
    stats = Stats(rows=len(records))
    if template == TEMPLATE_NAME and not train_on_prompt:
        _mindformers_rows(tok, convs, length, input_ids, labels, stats)
    else:
        for k, conv in enumerate(convs):
            input_ids[k], labels[k], n = chat_row(tok, conv, template, train_on_prompt, length)
            stats.tokens += min(n, length)
            stats.rows_truncated += n > length
    trained = np.count_nonzero(labels != IGNORE_INDEX, axis=1)
    stats.trained_tokens = int(trained.sum())
    stats.rows_fully_masked = int(np.count_nonzero(trained == 0))
    return input_ids, labels, stats


def _mindformers_rows(tok, convs: list, length: int, input_ids, labels, stats: Stats) -> None:
    """Fill the rows of vicuna_v1.1 conversations as MindFormers masks them."""
    plans = [record_plans(conv, tok) for conv in convs]
    flat, offsets = tok.encode_flat([t for rounds in plans for plan in rounds for t in plan.texts])
    offsets = offsets.tolist()  # Python ints: cheaper than numpy scalars one at a time
    split = _SplitRows(tok, flat)
    text = 0
    for k, rounds in enumerate(plans):
        if all(plan.prefix is not None for plan in rounds):
            split.add(k, rounds, offsets[text : text + 2 * len(rounds) + 1])
            text += 2 * len(rounds)
            continue
        parts = []
        for plan in rounds:
            encoded = [
                flat[offsets[text + i] : offsets[text + i + 1]].tolist()
                for i in range(len(plan.texts))
            ]
            text += len(plan.texts)
            parts.append(plan.assemble(encoded, tok))
        input_ids[k], labels[k], n = qa_row(parts, length, tok)
        stats.tokens += min(n, length)
        stats.rows_truncated += n > length
    split.write(input_ids, labels, length, stats)


class _SplitRows:
    """The rows whose rounds all take the split path, built together by numpy:
    each row is a list of segments - BOS, then per round the prefix's ids, the
    question, the answer, EOS - read from one source array (the chunk's encoded
    texts, then BOS, EOS and the prefixes' ids). BOS, prefixes and questions are
    masked; what qa_row does for such rows, where every round is instructed."""

    def __init__(self, tok, flat: np.ndarray):
        consts = {"bos": [tok.bos_id], "eos": [tok.eos_id]}
        consts.update((p, tok.cached_ids(p)) for p in (SYSTEM_PREFIX, USER_PREFIX))
        self.at, parts, end = {}, [flat], len(flat)
        for name, ids in consts.items():
            self.at[name] = (end, len(ids))
            parts.append(np.asarray(ids, dtype=np.int32))
            end += len(ids)
        self.source = np.concatenate(parts)
        self.pad_id = tok.pad_id
        self.rows, self.starts, self.lengths, self.masked, self.owner = [], [], [], [], []

    def add(self, k: int, rounds: list, offsets: list) -> None:
        """Row k from its rounds and its texts' offsets (question, answer per round)."""
        (bos, _), (eos, _) = self.at["bos"], self.at["eos"]
        starts, lengths, masked = [bos], [1], [True]
        for r, plan in enumerate(rounds):
            q, a, end = offsets[2 * r : 2 * r + 3]
            head, head_len = self.at[plan.prefix]
            starts += (head, q, a, eos)
            lengths += (head_len, a - q, end - a, 1)
            masked += (True, True, False, False)
        self.starts += starts
        self.lengths += lengths
        self.masked += masked
        self.owner += [len(self.rows)] * len(starts)
        self.rows.append(k)

    def write(self, input_ids: np.ndarray, labels: np.ndarray, length: int, stats: Stats) -> None:
        """Fill the rows into input_ids and labels (n, length); count them in stats."""
        if not self.rows:
            return
        lengths = np.asarray(self.lengths, dtype=np.int64)
        ends = np.cumsum(lengths)
        shift = np.repeat(np.asarray(self.starts, dtype=np.int64) - (ends - lengths), lengths)
        ids = self.source[shift + np.arange(len(shift))]  # all rows' ids, one after another
        masked = np.repeat(np.asarray(self.masked), lengths)
        owner = np.repeat(np.asarray(self.owner, dtype=np.int64), lengths)
        n = np.bincount(owner, minlength=len(self.rows))  # unpadded row lengths
        pos = np.arange(len(ids)) - (np.cumsum(n) - n)[owner]
        keep = pos < length
        rows = np.full((len(self.rows), length), self.pad_id, dtype=np.int32)
        rows[owner[keep], pos[keep]] = ids[keep]
        row_labels = np.full_like(rows, IGNORE_INDEX)
        row_labels[owner[keep], pos[keep]] = np.where(masked, IGNORE_INDEX, ids)[keep]
        # MindFormers' cur_len != total_len: a pad id inside a row that was not cut
        pads = np.bincount(owner[ids == self.pad_id], minlength=len(self.rows))
        row_labels[(n < length) & (pads > 0)] = IGNORE_INDEX
        input_ids[self.rows] = rows
        labels[self.rows] = row_labels
        stats.tokens += int(np.minimum(n, length).sum())
        stats.rows_truncated += int(np.count_nonzero(n > length))


# ---- wiki


def wiki_chunk(tok, paragraphs: list) -> np.ndarray:
    """The concatenated ids of the paragraphs, each as BOS + text + EOS."""
    flat, offsets = tok.encode_flat(paragraphs)
    # BOS before each paragraph's ids, EOS after them
    out = np.insert(flat, offsets[:-1], tok.bos_id)
    return np.insert(out, offsets[1:] + np.arange(1, len(offsets)), tok.eos_id)

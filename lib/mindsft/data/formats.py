"""The record shapes `mindsft preprocess --dataset_type qa` reads, each turned into
one `Conversation`: the human/gpt turns MindFormers' conversation JSON holds, and
an optional system message.

- conversation JSON / ShareGPT: `conversations`, a list of `from`/`value` turns;
  roles human or user, gpt or assistant, and system (first turn only, or a
  top-level `system` string);
- OpenAI chat: `messages`, a list of `role`/`content` messages; roles user,
  assistant and system (first message only, or a top-level `system` string);
- alpaca: `instruction`, optional `input`, `output`: the Stanford Alpaca prompt as
  the human turn, as `mindsft alpaca-converter` writes it.

A file is a JSON list of records, or JSON Lines - one record per line - when it is
named `.jsonl` or its first line is a JSON object with more lines after it. A file
may mix the shapes; each record is recognised by its keys."""

import json
from dataclasses import dataclass
from pathlib import Path

from mindsft.data.alpaca import alpaca_prompt, check_record
from mindsft.errors import MindsftError
from mindsft.files import read_text

SPEAKER_OF = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}
SYSTEM = "system"
ROLES = (*SPEAKER_OF, SYSTEM)


@dataclass
class Conversation:
    """One record, in the shape the templates render."""

    turns: list
    """[{"from": "human" | "gpt", "value": str}, ...] as written (a leading gpt turn
    is dropped and alternation checked when rendered)."""
    system: str | None
    """The record's system message; None: the template's own."""
    where: str
    """The record named for messages: "FILE: record K (id 'X')"."""


def to_conversation(record, where: str) -> Conversation:
    """The Conversation of one input record of any shape above; `where` names it."""
    if not isinstance(record, dict):
        raise MindsftError(f"{where}: expected an object, got {type(record).__name__}")
    if "id" in record:
        where += f" (id {record['id']!r})"
    if "conversations" in record:
        items, keys, what = record["conversations"], ("from", "value"), "turn"
    elif "messages" in record:
        items, keys, what = record["messages"], ("role", "content"), "message"
    elif "instruction" in record or "output" in record:
        check_record(record, where)
        turns = [
            {"from": "human", "value": alpaca_prompt(record)},
            {"from": "gpt", "value": record["output"]},
        ]
        return Conversation(turns, None, where)
    else:
        raise MindsftError(
            f"{where}: expected an object with 'conversations' (ShareGPT), 'messages' "
            "(OpenAI) or 'instruction' and 'output' (alpaca)"
        )
    system = _text(record.get(SYSTEM), f"{where}: 'system'")
    if not isinstance(items, list) or not items:
        raise MindsftError(f"{where}: {what}s must be a non-empty list (the 'conversations')")
    turns = []
    for j, item in enumerate(items):
        if not isinstance(item, dict) or keys[0] not in item or keys[1] not in item:
            raise MindsftError(
                f"{where}: {what} {j} must be an object with {keys[0]!r} and {keys[1]!r}"
            )
        role, value = item[keys[0]], item[keys[1]]
        if role == SYSTEM and j == 0:
            system = _text(value, f"{where}: {what} 0 {keys[1]!r}")
        elif role == SYSTEM:
            raise MindsftError(
                f"{where}: {what} {j} is from 'system', which only the first {what} may be"
            )
        elif isinstance(role, str) and role in SPEAKER_OF:
            turns.append({"from": SPEAKER_OF[role], "value": value})
        else:
            raise MindsftError(
                f"{where}: {what} {j} has the unknown role {role!r} (known: {', '.join(ROLES)})"
            )
    return Conversation(turns, system, where)


def _text(value, where: str):
    if value is not None and not isinstance(value, str):
        raise MindsftError(f"{where} is {type(value).__name__}, expected a string")
    return value


def is_json_lines(path) -> bool:
    """A `.jsonl` file, or one whose first line is a JSON object with more lines after it."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return True
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
            if not first.lstrip().startswith("{") or not isinstance(json.loads(first), dict):
                return False
            return any(line.strip() for line in f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False  # not JSON Lines; reading it as a JSON list says what is wrong


def iter_json_lines(path, opened=None):
    """(record, line number) of each non-blank line of a JSON Lines file, parsed as
    needed; a line that is not JSON, or a file with none, is one line naming it.
    `opened` is called with the file once it is open."""
    found = False
    try:
        with open(path, encoding="utf-8") as f:
            if opened is not None:
                opened(f)
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise MindsftError(
                        f"{path}: line {n}: not valid JSON ({exc.msg} at column {exc.colno})"
                    ) from None
                found = True
                yield record, n
    except (OSError, UnicodeDecodeError):
        read_text(path, "input file")  # raises the line that says why
        raise
    if not found:
        raise MindsftError(f"{path}: empty dataset (no records)")

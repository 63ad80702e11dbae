"""Alpaca records (`instruction`, `input`, `output`) -> FastChat conversation records,
as MindFormers' `alpaca_converter.py` writes them: the Stanford Alpaca prompt as the
human turn, the output as the gpt turn, ids "1", "2", ... as strings."""

import json

from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError
from mindsft.files import read_json

# The Stanford Alpaca training prompts (tatsu-lab/stanford_alpaca train.py), the two
# variants MindFormers' converter chooses between: with an `input` and without.
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)

REQUIRED_KEYS = ("instruction", "output")


def load_json_list(path) -> list:
    """Read a JSON file whose top level must be a non-empty list."""
    data = read_json(path, expect=list)
    if not data:
        raise MindsftError(f"{path}: empty dataset (no records)")
    return data


def check_record(record, where: str) -> None:
    """An alpaca record: an object with string `instruction`, `output` and optional `input`."""
    if not isinstance(record, dict):
        raise MindsftError(f"{where}: expected an object, got {type(record).__name__}")
    for key in REQUIRED_KEYS:
        if key not in record:
            raise MindsftError(f"{where}: missing {key!r}")
    for key in ("instruction", "input", "output"):
        if key in record and not isinstance(record[key], str):
            raise MindsftError(
                f"{where}: {key!r} is {type(record[key]).__name__}, expected a string"
            )


def alpaca_prompt(record: dict) -> str:
    """The human turn: the with-input prompt when `input` is present and non-empty."""
    if record.get("input", "") != "":
        return PROMPT_WITH_INPUT.format(instruction=record["instruction"], input=record["input"])
    return PROMPT_NO_INPUT.format(instruction=record["instruction"])


def to_conversations(records: list, path="<records>") -> list:
    """Alpaca records -> `[{"id": "1", "conversations": [human, gpt]}, ...]`."""
    out = []
    for index, record in enumerate(records):
        check_record(record, f"{path}: record {index}")
        out.append(
            {
                "id": str(index + 1),
                "conversations": [
                    {"from": "human", "value": alpaca_prompt(record)},
                    {"from": "gpt", "value": record["output"]},
                ],
            }
        )
    return out


def convert_alpaca(data_path, output_path) -> int:
    """Convert an alpaca JSON file to conversation JSON; returns the record count."""
    conversations = to_conversations(load_json_list(data_path), data_path)
    with atomic_output(output_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(conversations, f, ensure_ascii=False, indent=2)
    return len(conversations)

import hashlib
import json

from mindsft.cli import main
from mindsft.data.alpaca import PROMPT_NO_INPUT, PROMPT_WITH_INPUT, to_conversations

# sha256 of the conversation JSON that MindFormers' own alpaca_converter.py logic
# (its PROMPT_DICT, format_map and json.dump(..., ensure_ascii=False, indent=2), run
# in a throwaway environment) wrote for ../shared/fixtures/alpaca_en_demo.json
MINDFORMERS_CONVERSATION_SHA256 = "d58250840c66bba9d4605a705b9e1cd4b9437dffbdc8fc38e8ed682fc76e84ec"


def test_alpaca_converter_writes_what_mindformers_writes_for_the_fixture(alpaca_fixture, tmp_path):
    out = tmp_path / "conversation.json"
    rc = main(["alpaca-converter", "--data_path", str(alpaca_fixture), "--output_path", str(out)])
    assert rc == 0
    assert hashlib.sha256(out.read_bytes()).hexdigest() == MINDFORMERS_CONVERSATION_SHA256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conversation.json"]


def test_prompt_variant_follows_the_input_field():
    records = [
        {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
        {"instruction": "Translate.", "input": "Bonjour", "output": "Hello"},
        {"instruction": "Name a colour.", "output": "Blue"},  # no input key at all
    ]
    conv = to_conversations(records)
    assert [c["id"] for c in conv] == ["1", "2", "3"]
    assert conv[0]["conversations"][0]["value"] == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:"
    )
    assert conv[1]["conversations"][0]["value"] == (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nTranslate.\n\n### Input:\nBonjour\n\n### Response:"
    )
    assert conv[2]["conversations"][0]["value"] == PROMPT_NO_INPUT.format(
        instruction="Name a colour."
    )
    assert conv[1]["conversations"][1] == {"from": "gpt", "value": "Hello"}
    assert "{input}" in PROMPT_WITH_INPUT and "{input}" not in PROMPT_NO_INPUT


def test_output_keeps_unicode_and_two_space_indent(tmp_path):
    src = tmp_path / "a.json"
    src.write_text(json.dumps([{"instruction": "Dis {bonjour}", "input": "", "output": "Été ✓"}]))
    out = tmp_path / "c.json"
    main(["alpaca-converter", "--data_path", str(src), "--output_path", str(out)])
    text = out.read_text(encoding="utf-8")
    assert "Été ✓" in text and "Dis {bonjour}" in text
    assert text.startswith('[\n  {\n    "id": "1",\n    "conversations": [\n      {\n')

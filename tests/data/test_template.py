import pytest
from fastchat.conversation import get_conv_template
from mindsft.data.template import ASSISTANT_SEP, ROUND_SEP, check_turns, conversation_prompt
from mindsft.errors import MindsftError

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user's questions."
)


def turns(*pairs):
    return [{"from": f, "value": v} for f, v in pairs]


def fastchat_prompt(messages):
    conv = get_conv_template("vicuna_v1.1")
    for role, text in messages:
        conv.append_message(role, text)
    return conv.get_prompt()


def test_one_round_prompt_is_the_vicuna_v1_1_text():
    prompt = conversation_prompt(turns(("human", "Hi"), ("gpt", "Hello!")))
    assert prompt == SYSTEM + " USER: Hi ASSISTANT: Hello!</s>"
    assert ROUND_SEP == "</s>" and ASSISTANT_SEP == " ASSISTANT: "


def test_multi_round_prompt_equals_fastchat_get_prompt():
    convo = turns(("human", "2+2?"), ("gpt", "4"), ("human", "And 3+3?"), ("gpt", "6"))
    expected = fastchat_prompt(
        [("USER", "2+2?"), ("ASSISTANT", "4"), ("USER", "And 3+3?"), ("ASSISTANT", "6")]
    )
    assert conversation_prompt(convo) == expected
    assert expected.split(ROUND_SEP) == [
        SYSTEM + " USER: 2+2? ASSISTANT: 4",
        "USER: And 3+3? ASSISTANT: 6",
        "",
    ]


def test_fixture_prompts_equal_fastchat_get_prompt(alpaca_fixture):
    import json

    from mindsft.data.alpaca import to_conversations

    for record in to_conversations(json.loads(alpaca_fixture.read_text())[:50]):
        human, gpt = (t["value"] for t in record["conversations"])
        assert conversation_prompt(record["conversations"]) == fastchat_prompt(
            [("USER", human), ("ASSISTANT", gpt)]
        )


def test_a_leading_gpt_turn_is_dropped_as_mindformers_does():
    kept = check_turns(turns(("gpt", "welcome"), ("human", "q"), ("gpt", "a")), "r")
    assert [t["value"] for t in kept] == ["q", "a"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (turns(("human", "q"), ("human", "q2")), "turn 1 is from 'human'"),
        (turns(("human", "q"), ("gpt", "a"), ("gpt", "a2")), "turn 2 is from 'gpt'"),
        (turns(("human", "q"), ("system", "s")), "turn 1 is from 'system'"),
        ([{"from": "human", "value": 3}], "turn 0 value is int"),
        ([], "non-empty list"),
    ],
)
def test_turns_that_do_not_alternate_are_rejected(bad, message):
    with pytest.raises(MindsftError, match=message):
        check_turns(bad, "conv.json: record 7")

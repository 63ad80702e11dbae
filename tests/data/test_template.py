import pytest
from fastchat.conversation import get_conv_template
from mindsft.data.template import (
    ASSISTANT_SEP,
    ROUND_SEP,
    SPEAKERS,
    chat_prompt,
    check_template,
    check_turns,
    conversation_prompt,
    render,
    template_names,
)
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


# ---- every template preprocess accepts, against FastChat's own get_prompt()

CHAT = [
    ("human", "Hi there"),
    ("gpt", "Hello! How can I help?"),
    ("human", "7 x 8?"),
    ("gpt", "56"),
]


def fastchat_render(name, pairs, system=None):
    conv = get_conv_template(name)
    if system is not None:
        conv.set_system_message(system)
    for speaker, text in pairs:
        conv.append_message(conv.roles[SPEAKERS.index(speaker)], text)
    return conv.get_prompt()


@pytest.mark.parametrize("name", template_names())
def test_each_accepted_template_renders_as_fastchat_with_each_turn_in_place(name):
    system = "Be brief." if "{system_message}" in get_conv_template(name).system_template else None
    prompt, spans = render(name, turns(*CHAT), system)
    assert prompt == fastchat_render(name, CHAT, system)
    assert [s.speaker for s in spans] == [speaker for speaker, _ in CHAT]
    for span, (_, text) in zip(spans, CHAT, strict=True):
        assert prompt[span.text_start : span.text_end] == text
        assert span.start <= span.text_start and span.text_end <= span.end
    assert all(a.end == b.start for a, b in zip(spans, spans[1:], strict=False))
    assert spans[-1].end == len(prompt)
    for answer in spans[1::2]:
        assert answer.end > answer.text_end  # a separator ends every answer


def test_llama_2_renders_exactly_as_fastchat_documents_it():
    pairs = [("human", "Hi"), ("gpt", "Hello!"), ("human", "What is 7 times 8?"), ("gpt", "56")]
    prompt, spans = render("llama-2", turns(*pairs), "You are a helpful assistant.")
    assert prompt == (
        "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>"
        "[INST] What is 7 times 8? [/INST] 56 </s><s>"
    )
    assert prompt[spans[1].text_start : spans[1].end] == "Hello! </s><s>"
    assert chat_prompt("Hi", "llama-2") == "[INST] Hi [/INST]"


def test_vicuna_and_the_common_chat_templates_are_accepted():
    names = template_names()
    for name in ("vicuna_v1.1", "llama-2", "mistral", "alpaca", "zephyr", "qwen-7b-chat"):
        assert name in names


@pytest.mark.parametrize(
    "name, reason",
    [
        ("rwkv", "rewrites the text of turns"),
        ("chatgpt", "an API template"),
        ("raw", "no separator ends an answer"),
        ("chatglm3", "no separator ends an answer"),
        ("yuan2", "does not grow turn by turn"),
    ],
)
def test_templates_that_cannot_be_masked_are_refused_listing_those_that_can(name, reason):
    with pytest.raises(MindsftError) as refused:
        check_template(name)
    message = str(refused.value)
    assert f"template {name!r} cannot be masked reliably" in message and reason in message
    assert "templates that can: " in message and "llama-2" in message and "\n" not in message


@pytest.mark.parametrize(
    "name, close", [("llama2", "llama-2"), ("Vicuna", "vicuna_v1.1"), ("mistrall", "mistral")]
)
def test_an_unknown_template_name_lists_the_close_matches(name, close):
    with pytest.raises(MindsftError, match=rf"template {name!r} is not a FastChat template; "):
        check_template(name)
    with pytest.raises(MindsftError) as unknown:
        check_template(name)
    listed = str(unknown.value).split("close matches: ")[1].split(", ")
    assert close in listed and len(listed) <= 5


def test_a_system_message_for_a_template_without_one_is_refused():
    with pytest.raises(MindsftError, match="r9: template deepseek-coder has no place for a system"):
        render("deepseek-coder", turns(*CHAT), "Be brief.", "r9")


def test_an_empty_answer_is_all_role_tag():
    prompt, spans = render("llama-2", turns(("human", "q"), ("gpt", ""), ("human", "q2")))
    assert prompt == fastchat_render("llama-2", [("human", "q"), ("gpt", ""), ("human", "q2")])
    assert spans[1].text_start == spans[1].text_end == spans[1].end

"""FastChat (`fschat`) conversation templates: the prompt text of a conversation,
where each turn's role tag, text and separator lie in it, and the template around
a single prompt for generation (`chat_prompt`).

`vicuna_v1.1` is what MindFormers' qa preprocessing applies (rows.py builds its
rows MindFormers' way, from the constants below). Any other template is rendered
by FastChat's own `get_prompt()`, turn by turn (`render`); a template is offered
(`template_names`) when its prompt grows by one turn at a time - role tag, the
turn's text verbatim, separator - and an answer ends in a separator the model can
be trained to emit."""

import difflib
from dataclasses import dataclass
from functools import cache

from fastchat.conversation import SeparatorStyle, conv_templates, get_conv_template

from mindsft.errors import MindsftError

TEMPLATE_NAME = "vicuna_v1.1"  # MindFormers' template, the default
SPEAKERS = ("human", "gpt")  # conversation-JSON speakers, in turn order
NO_TEMPLATE = "none"  # chat_prompt: the text as it is
# styles whose get_prompt() rewrites a message (RWKV folds newlines): a turn's
# tokens cannot be told from its text
REWRITING_STYLES = (SeparatorStyle.RWKV,)
_MARK = "\x00"  # stands in for a turn's text to find its role tag and separator
_PROBE = ("Hi there", "Hello! How can I help?", "What is 7 times 8?", "56")


def _template():
    return get_conv_template(TEMPLATE_NAME)


_conv = _template()
ROLES = dict(zip(SPEAKERS, _conv.roles, strict=True))  # human -> USER, gpt -> ASSISTANT
ROUND_SEP = _conv.sep2  # ends each assistant turn: "</s>"
ASSISTANT_SEP = _conv.sep + _conv.roles[1] + ": "  # " ASSISTANT: ", ends the instruction part
# how rounds begin: the first with the system prompt, "USER:", the later ones with "USER:"
USER_PREFIX = _conv.roles[0] + ":"
SYSTEM_PREFIX = (
    _conv.system_template.format(system_message=_conv.system_message) + _conv.sep + USER_PREFIX
)
del _conv


@dataclass(frozen=True)
class Span:
    """Where one turn lies in a rendered prompt (character offsets)."""

    speaker: str
    """human or gpt."""
    start: int
    """Its role tag begins."""
    text_start: int
    """Its text begins."""
    text_end: int
    """Its text ends; its separator follows up to `end`."""
    end: int


def check_turns(turns, where: str) -> list:
    """The turns MindFormers keeps: a leading gpt turn is dropped, the rest must
    alternate human, gpt, human, ... with string values. `where` names the record."""
    if not isinstance(turns, list) or not turns:
        raise MindsftError(f"{where}: 'conversations' must be a non-empty list of turns")
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise MindsftError(f"{where}: turn {j} must be an object with 'from' and 'value'")
        if turn["from"] not in ROLES:
            raise MindsftError(
                f"{where}: turn {j} is from {turn['from']!r}, expected 'human' or 'gpt'"
            )
        if not isinstance(turn["value"], str):
            raise MindsftError(
                f"{where}: turn {j} value is {type(turn['value']).__name__}, expected a string"
            )
    start = 0 if turns[0]["from"] == SPEAKERS[0] else 1  # MindFormers drops a leading gpt turn
    for j in range(start, len(turns)):
        if turns[j]["from"] != SPEAKERS[(j - start) % 2]:
            raise MindsftError(
                f"{where}: turns do not alternate human/gpt (turn {j} is from {turns[j]['from']!r})"
            )
    return turns[start:]


def _conversation(name: str, system, where: str):
    conv = get_conv_template(name)
    if system is not None:
        if "{system_message}" not in conv.system_template:
            raise MindsftError(f"{where}: template {name} has no place for a system message")
        conv.set_system_message(system)
    return conv


def conversation_prompt(turns, where: str = "record", system=None) -> str:
    """The full vicuna_v1.1 prompt text of one conversation, via FastChat's `get_prompt()`."""
    conv = _conversation(TEMPLATE_NAME, system, where)
    for turn in check_turns(turns, where):
        conv.append_message(ROLES[turn["from"]], turn["value"])
    return conv.get_prompt()


def render(name: str, turns: list, system=None, where: str = "record") -> tuple:
    """(prompt, [Span per turn]): FastChat's `get_prompt()` of template `name` for
    checked `turns` (human first, alternating), with where each turn lies in it. A
    turn whose text the template does not write verbatim between the prompt so far
    and a separator is an error naming it; an empty turn is all role tag."""
    conv = _conversation(name, system, where)
    prompt, spans = conv.get_prompt(), []
    for j, turn in enumerate(turns):
        conv.append_message(conv.roles[len(conv.messages) % 2], _MARK)
        marked = conv.get_prompt()
        conv.update_last_message(turn["value"])
        full = conv.get_prompt()
        head, _, tail = marked[len(prompt) :].partition(_MARK)
        start = len(prompt)
        if not full.startswith(prompt) or not marked.startswith(prompt):
            raise MindsftError(f"{where}: template {name} rewrites the prompt before turn {j}")
        if turn["value"] == "":  # FastChat writes only the role tag
            spans.append(Span(turn["from"], start, len(full), len(full), len(full)))
        elif full[start:] == head + turn["value"] + tail:
            text_start = start + len(head)
            spans.append(Span(turn["from"], start, text_start, len(full) - len(tail), len(full)))
        else:
            raise MindsftError(f"{where}: template {name} does not write turn {j} as it is")
        prompt = full
    return prompt, spans


def _refusal(name: str):
    """Why template `name` cannot be masked, or None when it can."""
    conv = get_conv_template(name)
    if conv.sep_style is None:
        return "an API template, no prompt text"
    if conv.sep_style in REWRITING_STYLES:
        return "it rewrites the text of turns"
    if len(conv.messages) % 2:
        return "its built-in example ends with a human turn"
    turns = [{"from": SPEAKERS[j % 2], "value": v} for j, v in enumerate(_PROBE)]
    try:
        _, spans = render(name, turns)
    except (MindsftError, ValueError):
        return "its prompt does not grow turn by turn"
    if any(s.speaker == "gpt" and s.text_end == s.end for s in spans):
        return "no separator ends an answer, so stopping cannot be trained"
    return None


@cache
def template_names() -> tuple:
    """The FastChat templates whose turns can be told apart and masked, by name."""
    return tuple(sorted((n for n in conv_templates if _refusal(n) is None), key=str.lower))


def check_template(name: str) -> str:
    """`name` when it is a template `preprocess` can mask; otherwise one line saying
    why not: the close matches of an unknown name, or the templates that work."""
    if name in template_names():
        return name
    if name in conv_templates:
        raise MindsftError(
            f"template {name!r} cannot be masked reliably ({_refusal(name)}); templates "
            f"that can: {', '.join(template_names())}"
        )
    lower = {n.lower(): n for n in template_names()}
    close = difflib.get_close_matches(name.lower(), lower, n=5, cutoff=0.5)
    hint = (
        f"close matches: {', '.join(lower[c] for c in close)}"
        if close
        else f"templates: {', '.join(template_names())}"
    )
    raise MindsftError(f"template {name!r} is not a FastChat template; {hint}")


def chat_prompt(text: str, template: str = TEMPLATE_NAME) -> str:
    """The text a model sees when asked `text`: the conversation up to the assistant's
    turn, laid out as `mindsft preprocess --template` lays out training data, or
    `text` itself for template "none"."""
    if template == NO_TEMPLATE:
        return text
    conv = get_conv_template(check_template(template))
    conv.append_message(conv.roles[0], text)
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()

"""The FastChat `vicuna_v1.1` prompt template that MindFormers' qa preprocessing
applies to conversation records, taken from FastChat itself (`fschat`), and the
same template around a single prompt for generation (`chat_prompt`)."""

from fastchat.conversation import get_conv_template

from mindsft.errors import MindsftError

TEMPLATE_NAME = "vicuna_v1.1"
CHAT_TEMPLATES = (TEMPLATE_NAME, "none")  # what `chat_prompt` takes; none: the text as is
SPEAKERS = ("human", "gpt")  # conversation-JSON speakers, in turn order


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


def conversation_prompt(turns, where: str = "record") -> str:
    """The full vicuna_v1.1 prompt text of one conversation, via FastChat's `get_prompt()`."""
    conv = _template()
    for turn in check_turns(turns, where):
        conv.append_message(ROLES[turn["from"]], turn["value"])
    return conv.get_prompt()


def chat_prompt(text: str, template: str = TEMPLATE_NAME) -> str:
    """The text a model sees when asked `text`: the conversation up to the assistant's
    turn, laid out as `mindsft preprocess` lays out training data, or `text` itself
    for template "none"."""
    if template == "none":
        return text
    conv = get_conv_template(template)
    conv.append_message(conv.roles[0], text)
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()

"""Reading preprocess's input files: a JSON list streamed record by record equals
json.load, and fails with load_json_list's own one-line error."""

import json

import mindsft.data.inputs as inputs
import pytest


@pytest.mark.parametrize(
    "content",
    [
        '[{"a": 1}]',
        ' \n\t[ {"a": [1, {"b": "]"}]} ,\r\n"x,]" , 3.5e2,null,[] ] \n',
        '[{"s": "\\u00e9\\n", "t": "日本"}, {"k": -0.0}]',
        "[12345, 6.25e-3, true, 1234567]",  # numbers cut across blocks
    ],
)
@pytest.mark.parametrize("block", [1, 5, 1 << 20])  # characters read at a time
def test_streamed_json_list_equals_json_load(tmp_path, monkeypatch, content, block):
    monkeypatch.setattr(inputs._JsonStream, "BLOCK", block)
    path = tmp_path / "list.json"
    path.write_text(content, encoding="utf-8")
    assert list(inputs.iter_json_list(path)) == json.loads(content)


@pytest.mark.parametrize(
    "content", ["", "{}", "[]", "[ ]", "[1,]", "[1 2]", "[1] x", "[1", '[{"a": }]', "\ufeff[1]"]
)
@pytest.mark.parametrize("block", [1, 1 << 20])
def test_streamed_json_list_fails_as_load_json_list(tmp_path, monkeypatch, content, block):
    monkeypatch.setattr(inputs._JsonStream, "BLOCK", block)
    from mindsft.data.alpaca import load_json_list
    from mindsft.errors import MindsftError

    path = tmp_path / "list.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(MindsftError) as expected:
        load_json_list(path)
    with pytest.raises(MindsftError) as streamed:
        list(inputs.iter_json_list(path))
    assert str(streamed.value) == str(expected.value)

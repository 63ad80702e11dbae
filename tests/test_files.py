"""Reading JSON and YAML files and hashing files: every failure is one line that
names the file and what is wrong."""

import hashlib

import pytest
from mindsft.errors import MindsftError
from mindsft.files import file_sha256, read_json, read_text, read_yaml


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_json_and_yaml_with_the_expected_top_level_are_returned(tmp_path):
    (tmp_path / "a.json").write_text('{"k": [1, 2]}')
    (tmp_path / "b.json").write_text("[1, 2]")
    (tmp_path / "c.yaml").write_text("model:\n  model_config: {seq_length: 8}\n")
    assert read_json(tmp_path / "a.json") == {"k": [1, 2]}
    assert read_json(tmp_path / "b.json", expect=list) == [1, 2]
    assert read_json(tmp_path / "b.json", expect=None) == [1, 2]
    assert read_yaml(tmp_path / "c.yaml") == {"model": {"model_config": {"seq_length": 8}}}


@pytest.mark.parametrize(
    ("name", "content", "reader", "message"),
    [
        ("absent.json", None, read_json, "absent.json: JSON file not found"),
        ("bad.json", '{"k": }', read_json, "bad.json: not valid JSON (Expecting value at line 1"),
        ("list.json", "[1]", read_json, "list.json: expected a mapping at the top level of the "),
        ("latin.json", b'{"k": "\xe9"}', read_json, "latin.json: not UTF-8 text"),
        ("absent.yaml", None, read_yaml, "absent.yaml: YAML file not found"),
        ("bad.yaml", "a: [1", read_yaml, "bad.yaml: not valid YAML ("),
        (
            "empty.yaml",
            "",
            read_yaml,
            "empty.yaml: expected a mapping at the top level of the YAML, got nothing",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_it(tmp_path, name, content, reader, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(MindsftError) as err:
        reader(path)
    assert one_line(err).startswith(f"{tmp_path}/{message}")


def test_a_folder_is_not_read_as_a_file(tmp_path):
    with pytest.raises(MindsftError) as err:
        read_text(tmp_path, "tokenizer file")
    assert one_line(err) == f"{tmp_path}: is a directory, expected a tokenizer file"


def test_file_sha256_is_hashlib_over_the_whole_file(tmp_path, monkeypatch):
    import mindsft.files

    data = bytes(range(256)) * 41  # not a multiple of the block read at a time
    (tmp_path / "f").write_bytes(data)
    monkeypatch.setattr(mindsft.files, "HASH_BLOCK", 1000)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    with pytest.raises(MindsftError, match="absent: cannot read"):
        file_sha256(tmp_path / "absent")

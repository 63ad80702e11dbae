import pytest
from mindsft.atomic import atomic_output


def test_atomic_output_renames_file_on_success(tmp_path):
    target = tmp_path / "out.json"
    with atomic_output(target) as tmp:
        tmp.write_text("{}")
        assert not target.exists()
    assert target.read_text() == "{}"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.mindrecord"
    with pytest.raises(RuntimeError), atomic_output(target, suffixes=(".db",)) as tmp:
        tmp.write_text("half")
        (tmp.parent / f"{tmp.name}.db").write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_replaces_folder(tmp_path):
    target = tmp_path / "hf"
    target.mkdir()
    (target / "old").write_text("x")
    with atomic_output(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new"]

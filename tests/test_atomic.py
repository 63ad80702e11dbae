"""atomic_output: whole or nothing, OS errors as one line naming the target."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mindsft.atomic import atomic_output, check_writable
from mindsft.errors import MindsftError

ROOT = Path(__file__).resolve().parents[1]


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


def test_a_failed_final_rename_leaves_no_temp_file_and_names_the_target(tmp_path):
    target = tmp_path / "out.json"
    target.mkdir()  # a folder where the file goes
    with pytest.raises(MindsftError, match=r"out\.json: cannot write \(Is a directory\)$"):
        with atomic_output(target) as tmp:
            tmp.write_text("{}")
    assert list(tmp_path.iterdir()) == [target] and list(target.iterdir()) == []


def test_a_folder_output_does_not_replace_a_file(tmp_path):
    target = tmp_path / "hf"
    target.write_text("keep")
    with pytest.raises(MindsftError, match=r"hf: cannot write \(Not a directory\)$"):
        with atomic_output(target) as tmp:
            tmp.mkdir()
            (tmp / "config.json").write_text("{}")
    assert list(tmp_path.iterdir()) == [target] and target.read_text() == "keep"


def test_an_os_error_on_the_temp_name_names_the_target_and_scratch_files_go(tmp_path):
    target = tmp_path / "out.ckpt"
    with pytest.raises(MindsftError, match=r"out\.ckpt\.ckpt: cannot write \(No space left"):
        with atomic_output(target) as tmp:
            Path(f"{tmp}.tmp").write_text("a library's own scratch file, named after ours")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{tmp}.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_an_os_error_about_another_file_passes_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_output(tmp_path / "out") as tmp:
        tmp.write_text("x")
        (tmp_path / "absent.json").read_text()
    assert list(tmp_path.iterdir()) == []


def test_check_writable_creates_nothing_and_refuses_the_other_kind(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "out.json", "file")
    (tmp_path / "file").write_text("x")
    with pytest.raises(MindsftError, match=r"file: cannot write \(Not a directory\)"):
        check_writable(tmp_path / "file", "dir")
    with pytest.raises(MindsftError, match=r"file/out\.json: cannot write \(.*Not a directory"):
        check_writable(tmp_path / "file" / "out.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root")
def test_a_read_only_filesystem_fails_on_entry_and_cleanup_never_masks_it(tmp_path):
    """In a private mount namespace: the location fails before the block runs, and
    removing a temp name on a read-only filesystem raises nothing."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mindsft.atomic import _remove, atomic_output\n"
        "from mindsft.errors import MindsftError\n"
        "_remove(Path(sys.argv[1]) / 'absent')\n"
        "try:\n"
        "    with atomic_output(Path(sys.argv[1]) / 'out.json'):\n"
        "        print('the block ran')\n"
        "except MindsftError as exc:\n"
        "    print(exc)\n"
    )
    script = 'mount -t tmpfs -o ro,size=64k tmpfs "$1" && exec "$2" -c "$3" "$1"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(tmp_path), sys.executable, code],
        env=dict(os.environ, PYTHONPATH=str(ROOT / "lib")),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == f"{tmp_path}/out.json: cannot write (Read-only file system)\n"

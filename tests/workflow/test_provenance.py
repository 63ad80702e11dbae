"""The code hash a rule carries as a param: the sha256 of its script and of the
mindsft modules that script imports, transitively, and of nothing else."""

import shutil

import pytest
from mindsft.errors import MindsftError
from mindsft.workflow import provenance

FAKE_PACKAGE = {
    "__init__.py": "",
    "a.py": "import json\n\n\ndef f():\n    from mindsft.b import g\n\n    return g()\n",
    "b.py": "from .sub import d\n\n\ndef g():\n    return d.X\n",
    "sub/__init__.py": "",
    "sub/d.py": "from .. import e\n\nX = e.X\n",
    "e.py": "X = 1\n",
    "unrelated.py": "Y = 2\n",
}


@pytest.fixture
def fake_lib(tmp_path, monkeypatch):
    """A small `mindsft` package in tmp_path, made the package the hash walks."""
    lib = tmp_path / "lib" / "mindsft"
    for name, text in FAKE_PACKAGE.items():
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_text(text)
    script = tmp_path / "script.py"
    script.write_text("from mindsft.a import f\n\nprint(f())\n")
    monkeypatch.setattr(provenance, "LIB", lib)
    return lib, script


def test_a_scripts_code_is_the_modules_it_imports_transitively(fake_lib):
    lib, script = fake_lib
    files = provenance.code_files(script)
    assert script in files
    assert sorted(str(p.relative_to(lib)) for p in files if p != script) == [
        "__init__.py",
        "a.py",
        "b.py",
        "e.py",  # from a function body, then through two relative imports
        "sub/__init__.py",
        "sub/d.py",
    ]


def test_the_code_hash_changes_with_imported_code_only(fake_lib):
    lib, script = fake_lib
    before = provenance.code_sha256(script)
    (lib / "unrelated.py").write_text("Y = 3\n")
    assert provenance.code_sha256(script) == before
    (lib / "e.py").write_text("X = 2\n")
    changed = provenance.code_sha256(script)
    assert changed != before
    script.write_text(script.read_text() + "# a comment\n")
    assert provenance.code_sha256(script) != changed


def test_an_import_of_a_module_that_is_not_there_is_an_error_naming_the_line(fake_lib):
    lib, script = fake_lib
    (lib / "a.py").write_text("def f():\n    from mindsft.gone import g\n\n    return g()\n")
    with pytest.raises(MindsftError, match=r"a\.py:2: imports mindsft\.gone, which is not"):
        provenance.code_files(script)


def test_the_code_hash_does_not_depend_on_where_the_checkout_is(fake_lib, tmp_path, monkeypatch):
    lib, script = fake_lib
    here = provenance.code_sha256(script)
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "lib", moved / "lib")
    shutil.copy(script, moved / "script.py")
    monkeypatch.setattr(provenance, "LIB", moved / "lib" / "mindsft")
    assert provenance.code_sha256(moved / "script.py") == here


@pytest.mark.parametrize(
    "script, runs, not_runs",
    [
        (
            "train",
            ["train/run.py", "train/trainer.py", "models/llama.py", "pet/lora.py"]
            + ["data/reader.py"],
            ["data/preprocess.py", "tiny.py", "convert/download.py", "workflow/plots.py"],
        ),
        (
            "preprocess",
            ["data/preprocess.py", "data/tokenizer.py"],
            ["models/llama.py", "data/reader.py", "train/trainer.py"],
        ),
        ("split_dataset", ["workflow/data.py", "files.py"], ["data/preprocess.py", "models"]),
        ("plot_loss", ["workflow/plots.py"], ["models", "train", "data"]),
        ("evaluate", ["models/llama.py", "data/reader.py"], ["data/preprocess.py"]),
    ],
)
def test_a_rules_code_holds_what_its_script_runs_and_not_the_rest(repo, script, runs, not_runs):
    lib = provenance.LIB
    files = provenance.code_files(repo / "workflow" / "scripts" / f"{script}.py")
    names = {str(p.relative_to(lib)) for p in files if p.is_relative_to(lib)}
    assert set(runs) <= names
    assert not [n for n in names for unwanted in not_runs if n.startswith(unwanted)]


def test_every_rule_carries_the_code_of_its_own_script(repo):
    """`code("x")` in a rule names the script the rule runs (rules/*.smk)."""
    for smk in sorted((repo / "rules").glob("*.smk")):
        for block in smk.read_text().split("\nrule ")[1:]:
            name = block.split(":", 1)[0]
            if "    script:\n" not in block:
                continue
            script = block.split("    script:\n", 1)[1].split('"')[1]
            assert f'code=code("{script.rsplit("/", 1)[1].removesuffix(".py")}")' in block, name

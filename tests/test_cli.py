"""The `mindsft` command itself: every option says what it does and its default,
`--version`, and progress bars that show counts when asked and stay out of logs."""

import argparse
import re

import pytest
from mindsft.cli import build_parser, main, version
from mindsft.progress import ENV


def subcommands() -> dict:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"mindsft": parser, **sub.choices}


def options(parser) -> list:
    return [
        a
        for a in parser._actions
        if a.option_strings
        and a.help != argparse.SUPPRESS  # MindFormers flags taken and reported, not shown
        and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
    ]


@pytest.mark.parametrize("name", list(subcommands()))
def test_every_option_says_what_it_does_and_its_default(name):
    parser = subcommands()[name]
    positionals = [a for a in parser._actions if not a.option_strings]
    # msrun-launcher takes msrun_launcher.sh's positional arguments only
    assert options(parser) or name == "mindsft" or all(a.help for a in positionals)
    for action in options(parser):
        flag = action.option_strings[-1]
        text = parser._get_formatter()._expand_help(action) if action.help else ""
        meaning = re.sub(r"\(default: [^)]*\)", "", text).strip(" ;,")
        assert meaning, f"{name} {flag}: no help saying what it does"
        if not action.required:
            assert "default" in text, f"{name} {flag}: help does not give the default: {text!r}"


@pytest.mark.parametrize("name", [n for n in subcommands() if n != "mindsft"])
def test_every_subcommand_describes_itself_in_whole_sentences(name):
    parser = subcommands()[name]
    assert parser.description and parser.description.rstrip().endswith("."), name


def test_version_names_the_installed_package(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"mindsft {version()}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", version())


def bars(err: str, desc: str) -> list:
    """The states a tqdm bar named `desc` was drawn in."""
    return [s.strip() for s in re.split(r"[\r\n]", err) if s.strip().startswith(f"{desc}:")]


def test_progress_bars_show_counts_when_asked_and_stay_out_of_logs(tmp_path, capsys, monkeypatch):
    from mindsft.tiny import DEMO_FILE, make_tiny_model

    monkeypatch.setenv(ENV, "")  # recorded, so restored after the test, whatever main sets
    monkeypatch.delenv(ENV)
    hf = make_tiny_model(tmp_path / "hf", seed=0)
    convert = ["convert-weight", "--input_path", str(hf), "--output_path", str(tmp_path / "m.ckpt")]
    assert main(convert) == 0  # stderr is not a terminal here: no bar
    assert not bars(capsys.readouterr().err, "convert-weight")
    assert main(["--progress", "on", *convert]) == 0
    drawn = bars(capsys.readouterr().err, "convert-weight")
    assert drawn and re.search(r"100%\|.*\| 21/21 \[", drawn[-1])  # 1 + 9 * 2 layers + 2

    argv = ["preprocess", "--dataset_type", "qa", "--input_glob", str(hf / DEMO_FILE)]
    argv += ["--model_file", str(hf / "tokenizer.model"), "--seq_length", "64"]
    assert main(["--progress", "on", *argv, "--output_file", str(tmp_path / "d.mindrecord")]) == 0
    drawn = bars(capsys.readouterr().err, "preprocess")
    assert drawn and "rows=96" in drawn[-1] and "100%" in drawn[-1]
    assert main(["--progress", "off", *argv, "--output_file", str(tmp_path / "e.mindrecord")]) == 0
    assert not bars(capsys.readouterr().err, "preprocess")

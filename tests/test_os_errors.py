"""Operating-system errors through the `mindsft` command, for every subcommand: the
output is an existing folder where a file goes (or a file where a folder goes), the
output location is read-only, the disk is full, an input cannot be read. Each ends
in one line naming the path and the OS reason, exit status 2, and leaves nothing
new where the output would have gone (no temporary files, libraries' own included).

Read-only and full locations are tmpfs mounts in a private mount namespace
(`unshare -m`, root only); as root an unreadable input needs the DAC capabilities
dropped (`setpriv`), which root otherwise has."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0
SEQ = 256  # the tiny demo's rows are 131-222 tokens
DROP_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]

# subcommand -> (argv with {i} the inputs folder and {o} the output, the output's
# kind, an input the command reads first); every subcommand of `mindsft --help`
COMMANDS = {
    "download": (
        ["download", "--repo_id", "org/tiny", "--output_dir", "{o}"],
        "dir",
        None,  # its input is huggingface_hub's cache
    ),
    "make-tiny-model": (["make-tiny-model", "--output_dir", "{o}"], "dir", None),
    "convert-weight": (
        ["convert-weight", "--input_path", "{i}/tiny", "--output_path", "{o}"],
        "file",
        "tiny/config.json",
    ),
    "convert-weight --reversed": (
        ["convert-weight", "--reversed", "--input_path", "{i}/base.ckpt", "--output_path", "{o}"],
        "dir",
        "base.ckpt.config.json",
    ),
    "alpaca-converter": (
        ["alpaca-converter", "--data_path", "{i}/alpaca.json", "--output_path", "{o}"],
        "file",
        "alpaca.json",
    ),
    "preprocess": (
        ["preprocess", "--dataset_type", "qa", "--input_glob", "{i}/conv.json"]
        + ["--model_file", "{i}/tiny/tokenizer.model", "--seq_length", str(SEQ)]
        + ["--output_file", "{o}"],
        "file",
        "tiny/tokenizer.model",
    ),
    "finetune": (
        ["finetune", "--config", "{i}/full.yaml", "--train_dataset_dir", "{i}/data.mindrecord"]
        + ["--load_checkpoint", "{i}/base.ckpt", "--output_dir", "{o}"],
        "dir",
        "full.yaml",
    ),
    "run": (
        ["run", "--config", "{i}/full.yaml", "--run_mode", "eval", "--load_checkpoint"]
        + ["{i}/base.ckpt", "--eval_dataset_dir", "{i}/data.mindrecord", "--output_dir", "{o}"],
        "dir",
        "full.yaml",
    ),
    "merge-lora": (
        ["merge-lora", "--config", "{i}/lora.yaml", "--base_checkpoint", "{i}/base.ckpt"]
        + ["--lora_checkpoint", "{i}/lora_run", "--output_path", "{o}"],
        "file",
        "lora.yaml",
    ),
    "evaluate": (
        ["evaluate", "--config", "{i}/tiny", "--load_checkpoint", "{i}/base.ckpt"]
        + ["--eval_dataset_dir", "{i}/data.mindrecord", "--output", "{o}"],
        "file",
        "tiny/config.json",
    ),
    "generate": (
        ["generate", "--config", "{i}/tiny", "--load_checkpoint", "{i}/base.ckpt"]
        + ["--model_file", "{i}/tiny/tokenizer.model", "--prompt", "hi"]
        + ["--max_new_tokens", "2", "--output", "{o}"],
        "file",
        "tiny/config.json",
    ),
    "export-adapter": (
        ["export-adapter", "--config", "{i}/lora.yaml", "--lora_checkpoint", "{i}/lora_run"]
        + ["--output_dir", "{o}"],
        "dir",
        "lora.yaml",
    ),
    "plan": (["plan", "--config", "{i}/full.yaml", "--output", "{o}"], "file", "full.yaml"),
    "import-adapter": (
        ["import-adapter", "--adapter_dir", "{i}/adapter", "--output_path", "{o}"],
        "file",
        "adapter/adapter_config.json",
    ),
}
NAMES = list(COMMANDS)
# refusals of an output of the other kind that a command words itself
OWN_REFUSAL = {"export-adapter": "exists and is not an adapter folder"}
# commands whose output is a run folder they write into, not a file or folder put in place
RUN_FOLDERS = ("finetune", "run")
NEEDS_ROOT = pytest.mark.skipif(not IS_ROOT, reason="tmpfs mounts need root (CI runs as root)")


def cache_model(hub: Path, repo_id: str, folder: Path) -> None:
    """`folder`'s files as a snapshot in huggingface_hub's cache layout (blobs, refs)."""
    commit = "0" * 40
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for path in (repo / "refs", repo / "blobs", snapshot):
        path.mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for src in folder.iterdir():
        shutil.copyfile(src, repo / "blobs" / src.name)
        (snapshot / src.name).symlink_to(Path("../../blobs") / src.name)


def finetune_yaml(name: str, out: Path) -> Path:
    """A shipped tiny finetune YAML for one short epoch at SEQ, in PyNative mode, in
    one process."""
    doc = yaml.safe_load((ROOT / "config" / "finetune" / f"{name}.yaml").read_text())
    doc["use_parallel"] = False
    doc["model"]["model_config"]["seq_length"] = SEQ
    doc["runner_config"]["epochs"] = 1
    doc["context"]["mode"] = 1
    out.write_text(yaml.safe_dump(doc))
    return out


def mindsft(argv, *, env=None, prefix=(), check=False) -> subprocess.CompletedProcess:
    cmd = [*prefix, sys.executable, "-m", "mindsft.cli", *argv]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert not check or done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The tiny demo model, its checkpoint, 16 alpaca records as conversations and as
    a MindRecord, full and LoRA YAMLs, a one-step LoRA run and its PEFT adapter, and
    the model in a huggingface_hub cache."""
    from mindsft.convert.llama import convert_hf_to_ms
    from mindsft.data.alpaca import convert_alpaca
    from mindsft.tiny import make_tiny_model

    i = tmp_path_factory.mktemp("inputs")
    tiny = make_tiny_model(i / "tiny", seed=0)
    records = json.loads((tiny / "alpaca_demo.json").read_text())[:16]
    (i / "alpaca.json").write_text(json.dumps(records))
    convert_alpaca(i / "alpaca.json", i / "conv.json")
    convert_hf_to_ms(tiny, i / "base.ckpt")
    cache_model(i / "hub", "org/tiny", tiny)
    env = environment(i)
    mindsft(argv_of(i, "preprocess", i / "data.mindrecord"), env=env, check=True)
    finetune_yaml("tiny_full", i / "full.yaml")
    finetune_yaml("tiny_lora", i / "lora.yaml")
    lora_run = [*argv_of(i, "finetune", i / "lora_run"), "--num_samples", "4"]
    lora_run[lora_run.index(f"{i}/full.yaml")] = f"{i}/lora.yaml"
    mindsft(lora_run, env=env, check=True)
    mindsft(argv_of(i, "export-adapter", i / "adapter"), env=env, check=True)
    return i


def environment(i: Path) -> dict:
    """This checkout's library first; the hub offline, its cache the inputs'."""
    path = f"{ROOT / 'lib'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return dict(os.environ, PYTHONPATH=path, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(i / "hub"))


def argv_of(i: Path, name: str, out: Path) -> list:
    """The argv of subcommand `name` reading from `i` and writing `out`."""
    return [a.format(i=i, o=out) for a in COMMANDS[name][0]]


def run_in_mount(i, name, out: Path, options: str, fill: bool) -> tuple:
    """Run subcommand `name` writing `out` inside a fresh tmpfs mounted (with
    `options`) on out's parent in a private mount namespace, optionally filled up
    first; (completed process, what the mount holds afterwards)."""
    mount = out.parent
    mount.mkdir()
    script = (
        'mount -t tmpfs -o "$1" tmpfs "$2" || exit 99; d="$2"; shift 2; '
        + ('head -c 1M /dev/zero > "$d/filler" 2>/dev/null; ' if fill else "")
        + '"$@" > /dev/null; rc=$?; cd "$d" && find . -mindepth 1; exit $rc'
    )
    argv = [sys.executable, "-m", "mindsft.cli", *argv_of(i, name, out)]
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", options, str(mount), *argv],
        env=environment(i),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 99, done.stderr
    return done, sorted(line.removeprefix("./") for line in done.stdout.split())


def assert_one_line(done, name: str, *parts: str) -> None:
    """Exit status 2 and the error on one line holding each of `parts`; finetune
    prints its progress on stderr too, so there it is the last line."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0], done.stderr
    if name != "finetune":
        assert len(lines) == 1, done.stderr
    assert errors[0].startswith(f"mindsft {name.split()[0]}: error: "), done.stderr
    for part in parts:
        assert part in errors[0], done.stderr


@pytest.mark.parametrize("name", NAMES)
def test_an_output_of_the_other_kind_is_one_line_and_left_alone(inputs, tmp_path, name):
    out = tmp_path / "taken"
    if COMMANDS[name][1] == "file":
        out.mkdir()
        (out / "keep").write_text("x")
        reason = "Is a directory"
    else:
        out.write_text("x")
        reason = "Not a directory"
    done = mindsft(argv_of(inputs, name, out), env=environment(inputs))
    assert_one_line(done, name, f"{out}: {OWN_REFUSAL.get(name, f'cannot write ({reason})')}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (out / "keep").read_text() == "x" if out.is_dir() else out.read_text() == "x"


@NEEDS_ROOT
@pytest.mark.parametrize("name", NAMES)
def test_a_read_only_location_is_one_line_before_any_work(inputs, tmp_path, name):
    out = tmp_path / "ro" / "out"
    done, left = run_in_mount(inputs, name, out, "ro,size=64k", fill=False)
    assert_one_line(done, name, f"{out}: cannot write (Read-only file system)")
    assert left == []


@NEEDS_ROOT
@pytest.mark.parametrize("name", NAMES)
def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(inputs, tmp_path, name):
    out = tmp_path / "full" / "out"
    done, left = run_in_mount(inputs, name, out, "size=64k", fill=True)
    assert_one_line(done, name, str(out), "(No space left on device)")
    if name in RUN_FOLDERS:  # a run folder stays, with its log, never with a temporary file
        assert "filler" in left and not [p for p in left if ".tmp" in p], left
    else:
        assert left == ["filler"]


@pytest.mark.parametrize("name", [n for n in NAMES if COMMANDS[n][2] is not None])
def test_an_unreadable_input_is_one_line_naming_it(inputs, tmp_path, name):
    denied = inputs / COMMANDS[name][2]
    mode = denied.stat().st_mode
    denied.chmod(0)
    try:
        done = mindsft(
            argv_of(inputs, name, tmp_path / "out"),
            env=environment(inputs),
            prefix=DROP_DAC if IS_ROOT else (),
        )
    finally:
        denied.chmod(mode)
    assert_one_line(done, name, str(denied), "Permission denied")
    assert list(tmp_path.iterdir()) == []


def test_an_expected_failure_prints_no_mindspore_warning_unless_asked(inputs, tmp_path, qa_schema):
    """A MindRecord without rows makes MindSpore log [WARNING] lines; the CLI keeps
    its log at errors, unless the user sets GLOG_v."""
    from mindspore.mindrecord import FileWriter

    empty = tmp_path / "empty.mindrecord"
    writer = FileWriter(str(empty), shard_num=1, overwrite=True)
    writer.add_schema(qa_schema, "qa")
    writer.commit()
    argv = argv_of(inputs, "evaluate", tmp_path / "m.json")
    argv[argv.index(f"{inputs}/data.mindrecord")] = str(empty)
    env = environment(inputs)
    env.pop("GLOG_v", None)
    done = mindsft(argv, env=env)
    assert_one_line(done, "evaluate", f"{empty}: the MindRecord holds no rows")
    loud = mindsft(argv, env={**env, "GLOG_v": "2"})
    assert "[WARNING]" in loud.stderr and loud.returncode == 2


@pytest.mark.parametrize("name", ["evaluate", "generate", "preprocess", "finetune"])
def test_a_long_command_checks_its_output_before_reading_any_input(inputs, tmp_path, name):
    """With every input missing, the error is still the output's: it came first."""
    out = tmp_path / "taken"
    out.mkdir() if COMMANDS[name][1] == "file" else out.write_text("x")
    missing = tmp_path / "missing"
    done = mindsft(argv_of(missing, name, out), env=environment(inputs))
    assert_one_line(done, name, f"{out}: cannot write")

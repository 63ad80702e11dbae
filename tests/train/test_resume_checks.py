"""What resume refuses and what it survives: a corrupt or truncated newest
checkpoint (fallback to the newest one that verifies, saying why), a run whose
signature differs (refused, naming the difference; more epochs under a schedule
that does not depend on them accepted), temporary files of an interrupted save,
a full disk, and a second run on the same output_dir."""

import json
import os
import shutil
import signal
import subprocess

import mindspore as ms
import numpy as np
import pytest
from mindsft.cli import main
from mindsft.errors import MindsftError
from mindsft.train.checkpoint import RunCheckpoints, verify
from mindsft.train.config import load_finetune_config
from mindsft.train.lock import RunLock
from mindsft.train.signals import Stopped, StopSignals
from mindsft.train.trainer import RunPaths, Trainer


@pytest.fixture(scope="module")
def trainer_for(workdir, finetune_yaml):
    """trainer_for(name, **yaml_kwargs): a set-up Trainer writing to workdir/name."""

    def make(name, yaml_name=None, said=None, **yaml_kwargs):
        path = finetune_yaml(workdir / f"{yaml_name or name}.yaml", **yaml_kwargs)
        paths = RunPaths(
            str(workdir / "data.mindrecord"), str(workdir / "base.ckpt"), str(workdir / name)
        )
        trainer = Trainer(load_finetune_config(path), paths, say=said)
        trainer.setup()
        return trainer

    return make


@pytest.fixture(scope="module")
def straight(workdir, trainer_for, read_losses):
    """An uninterrupted 8-step run saving every 2 steps, and its losses."""
    trainer_for("straight", save_steps=2, keep_max=0).train()
    return read_losses(workdir / "straight")


def copy_run(workdir, name) -> RunCheckpoints:
    shutil.copytree(workdir / "straight", workdir / name)
    return RunCheckpoints(workdir / name)


def test_a_corrupt_newest_checkpoint_is_skipped_with_the_reason(
    workdir, trainer_for, straight, read_losses
):
    ckpts = copy_run(workdir, "corrupt")
    newest, truncated, intact = (f.path for f in ckpts.files(0)[-1:-4:-1])
    data = bytearray(newest.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(16)  # bit rot: 16 bytes changed mid-file
    newest.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-1000])  # the one before it cut short
    assert verify(newest).startswith("checksum mismatch") and verify(intact) is None
    lines = []
    trainer = trainer_for("corrupt", yaml_name="straight", said=lines.append, save_steps=2)
    assert trainer.resume() == intact
    skipped = [line for line in lines if line.startswith("skipping")]
    assert skipped == [
        f"skipping the save of epoch 1 step 8: rank_0: {verify(newest)}",
        f"skipping the save of epoch 1 step 6: rank_0: {verify(truncated)}",
    ]
    trainer.train()
    assert [r["loss"] for r in read_losses(workdir / "corrupt")] == [r["loss"] for r in straight]


def test_a_different_batch_size_is_refused_naming_it(workdir, trainer_for, straight):
    copy_run(workdir, "batch")
    trainer = trainer_for("batch", batch_size=4, save_steps=2)
    with pytest.raises(MindsftError, match=r"resume refused: batch_size: 2 -> 4"):
        trainer.resume()


def test_more_epochs_resume_only_when_the_schedule_of_the_steps_done_is_unchanged(
    workdir, trainer_for, straight, read_losses
):
    copy_run(workdir, "cosine")
    cosine = trainer_for("cosine", epochs=2, schedule="CosineWithWarmUpLR", save_steps=2)
    with pytest.raises(MindsftError, match="resume refused: lr_schedule: "):
        cosine.resume()  # another schedule type is another run
    copy_run(workdir, "longer")
    longer = trainer_for("longer", epochs=2, save_steps=2)
    assert longer.resume() is not None  # constant learning rate: 8 more steps fit exactly
    longer.train()
    trainer_for("two_epochs", epochs=2, save_steps=2).train()
    assert [r["loss"] for r in read_losses(workdir / "longer")] == [
        r["loss"] for r in read_losses(workdir / "two_epochs")
    ]


def test_an_epoch_dependent_schedule_refuses_more_epochs(workdir, trainer_for):
    kwargs = {"schedule": "CosineWithWarmUpLR", "save_steps": 4}
    trainer_for("cos1", **kwargs).train()
    cos2 = trainer_for("cos1", yaml_name="cos2", epochs=2, **kwargs)
    with pytest.raises(MindsftError, match=r"epochs: 1 -> 2 changes the learning rates of the 8"):
        cos2.resume()


def test_temporary_files_of_an_interrupted_save_are_removed_at_the_next_start(workdir, trainer_for):
    ckpts = RunCheckpoints(workdir / "leftover")
    folder = ckpts.rank_dir(0)
    folder.mkdir(parents=True)
    left = [folder / ".tiny_rank_0-1_2.ckpt.tmp-0123abcd", folder / "..x.ckpt.tmp-89abcdef.tmp-1"]
    for path in left:
        path.write_bytes(b"half")
    lines = []
    trainer_for("leftover", said=lines.append)
    assert not any(p.exists() for p in left)
    assert any("removed 2 temporary file(s) of an interrupted checkpoint write" in x for x in lines)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (root only): a checkpoint does not fit."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_naming_the_checkpoint_and_leaves_nothing(small_disk):
    ckpts = RunCheckpoints(small_disk, "tiny")
    tensors = {"w": ms.Tensor(np.ones((1024, 1024), np.float32))}  # 4 MiB
    with pytest.raises(MindsftError) as err:
        ckpts.save(0, 1, 2, tensors, keep_max=0)
    assert str(err.value) == (f"{ckpts.file(0, 1, 2)}: cannot write (No space left on device)")
    assert list(ckpts.rank_dir(0).iterdir()) == []


def test_a_second_run_on_the_output_dir_is_refused_naming_the_first(tmp_path):
    lines = []
    with RunLock(tmp_path, say=lines.append):
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(
            MindsftError, match=f"another run is using this output_dir .pid {os.getpid()} on "
        ):
            RunLock(tmp_path).__enter__()
    assert not (tmp_path / ".lock").exists() and lines == []


def test_a_stale_lock_of_a_dead_run_is_taken_over_with_a_line(tmp_path):
    stale = {"pid": 999999, "host": "vm", "started": "2026-01-01 00:00:00", "command": "x"}
    (tmp_path / ".lock").write_text(json.dumps(stale))
    lines = []
    with RunLock(tmp_path, say=lines.append):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert lines == [
        f"{tmp_path / '.lock'}: taking over the lock of a run that is gone "
        "(pid 999999 on vm, started 2026-01-01 00:00:00: x)"
    ]


def test_sigint_stops_after_the_step_it_arrives_in_with_that_steps_checkpoint(
    workdir, finetune_yaml, straight, read_losses
):
    config = load_finetune_config(finetune_yaml(workdir / "sigint.yaml", save_steps=4))
    paths = RunPaths(
        str(workdir / "data.mindrecord"), str(workdir / "base.ckpt"), str(workdir / "sigint")
    )

    def interrupt(record):
        if record["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl+C, during step 3's bookkeeping

    with StopSignals() as stop:
        trainer = Trainer(config, paths, stop=stop)
        trainer.setup()  # MindSpore puts its own SIGINT handler in: the loop takes it back
        with pytest.raises(Stopped) as stopped:
            trainer.train(after_step=interrupt)
    assert stopped.value.signum == signal.SIGINT
    path = RunCheckpoints(workdir / "sigint", "tiny").file(0, 1, 3)
    assert str(stopped.value) == f"stopped by SIGINT after step 3 of 8; checkpoint written: {path}"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    resumed = Trainer(config, paths)
    resumed.setup()
    assert resumed.resume() == path
    resumed.train()
    assert [r["loss"] for r in read_losses(workdir / "sigint")] == [r["loss"] for r in straight]


def test_finetune_on_an_output_dir_another_run_holds_is_one_line(workdir, finetune_yaml, capsys):
    argv = ["finetune", "--config", str(finetune_yaml(workdir / "held.yaml"))]
    argv += ["--train_dataset_dir", str(workdir / "data.mindrecord")]
    argv += ["--load_checkpoint", str(workdir / "base.ckpt"), "--output_dir", str(workdir / "held")]
    with RunLock(workdir / "held"):
        assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"mindsft finetune: error: {workdir / 'held'}: another run is using this output_dir "
        f"(pid {os.getpid()} on "
    )

"""TensorBoard event files when the YAML sets `tensorboard.tensorboard_dir`: read
back with TensorBoard's own EventAccumulator, they hold loss.jsonl's values, the
eval loss of training's evaluations among them; a resumed run leaves each step once."""

import re

import numpy as np
import pytest
import yaml
from mindsft.cli import main
from mindsft.errors import MindsftError
from mindsft.progress import ENV
from mindsft.train.config import load_finetune_config
from mindsft.train.tensorboard import (
    EVAL_LOSS,
    NO_WRITER,
    STEP_TAGS,
    TensorBoardConfig,
    open_writer,
)
from mindsft.train.trainer import RunPaths, Trainer


def events(folder) -> dict:
    """{tag: [(step, value), ...]} of every scalar in the event files under `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def purge_steps(path) -> list:
    """Steps of the SessionLog START events in one event file (tensorboardX's purge_step)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    return [
        e.step
        for e in EventFileLoader(str(path)).Load()
        if e.HasField("session_log") and e.session_log.status == SessionLog.START
    ]


@pytest.fixture
def tb_run(tmp_path, make_base_checkpoint, make_mindrecord, finetune_yaml):
    """(yaml, base, data): an 8-row run of 4 steps, checkpoints every 2, with a
    tensorboard block (timers and loss scale logged too)."""
    path = finetune_yaml(tmp_path / "tb.yaml", save_steps=2, mode=1)
    raw = yaml.safe_load(path.read_text())
    raw["tensorboard"] = {
        "tensorboard_dir": str(tmp_path / "tb"),
        "tensorboard_queue_size": 2,
        "log_timers_to_tensorboard": True,
        "log_loss_scale_to_tensorboard": True,
    }
    path.write_text(yaml.safe_dump(raw))
    base = make_base_checkpoint(tmp_path / "base.ckpt")
    return path, base, make_mindrecord(tmp_path / "d.mindrecord", rows=8)


def test_event_files_hold_the_loss_log_and_the_finetune_bar_shows_loss_and_speed(
    tb_run, tmp_path, read_losses, capsys, monkeypatch
):
    yaml_path, base, data = tb_run
    monkeypatch.setenv(ENV, "")  # recorded, so what main sets is undone after the test
    monkeypatch.delenv(ENV)
    argv = ["--progress", "on", "finetune", "--config", yaml_path, "--train_dataset_dir", data]
    argv += ["--load_checkpoint", base, "--output_dir", tmp_path / "out"]
    assert main([str(a) for a in argv]) == 0
    records = read_losses(tmp_path / "out")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    found = events(tmp_path / "tb")
    expected_tags = {*STEP_TAGS.values(), "iteration-time", "loss-scale"}
    assert set(found) == expected_tags
    for key, tag in STEP_TAGS.items():
        assert [s for s, _ in found[tag]] == [1, 2, 3, 4], tag
        want = np.array([r[key] for r in records], dtype=np.float32)
        assert np.array_equal(np.array([v for _, v in found[tag]], dtype=np.float32), want), tag
    times = np.array([r["tokens"] / r["tokens_per_s"] for r in records], dtype=np.float32)
    np.testing.assert_allclose([v for _, v in found["iteration-time"]], times, rtol=1e-6)
    assert {v for _, v in found["loss-scale"]} == {1.0}

    bar = [s for s in re.split(r"[\r\n]", capsys.readouterr().err) if s.startswith("finetune:")]
    last = bar[-1]
    assert "4/4" in last and f"loss={records[-1]['loss']:.4f}" in last
    assert re.search(r"tokens_per_s=\d+", last) and re.search(r"\[\d\d:\d\d<\d\d:\d\d", last)


def test_eval_loss_lands_beside_the_steps_and_a_resumed_run_leaves_each_step_once(
    tb_run, tmp_path, read_losses
):
    yaml_path, base, data = tb_run
    raw = yaml.safe_load(yaml_path.read_text())
    raw.update(do_eval=True, eval_step_interval=2)
    yaml_path.write_text(yaml.safe_dump(raw))
    cfg = load_finetune_config(yaml_path)
    paths = RunPaths(str(data), str(base), str(tmp_path / "out"), eval_dataset=str(data))
    first = Trainer(cfg, paths)
    first.setup()
    first.train()
    for late in first.ckpts.files(0)[1:]:  # as if killed after step 2's checkpoint
        late.path.unlink()
    again = Trainer(cfg, paths)
    again.setup()
    again.resume()
    again.train()
    found = events(tmp_path / "tb")
    assert [s for s, _ in found["loss"]] == [1, 2, 3, 4]  # steps 3-4 of the first hidden
    evals = [(r["step"], r["eval_loss"]) for r in read_losses(tmp_path / "out") if "eval_loss" in r]
    assert [s for s, _ in evals] == [2, 4]
    assert found[EVAL_LOSS] == [(s, float(np.float32(v))) for s, v in evals]
    # the second event file tells readers to drop the first's events from step 3 on
    first_file, second_file = sorted((tmp_path / "tb").iterdir())
    assert purge_steps(first_file) == [] and purge_steps(second_file) == [3]


def test_only_rank_0_and_only_with_a_folder_writes(tmp_path):
    config = TensorBoardConfig(str(tmp_path / "tb"))
    with open_writer(config, rank=1) as writer:
        assert writer is NO_WRITER
    with open_writer(None, rank=0) as writer:
        assert writer is NO_WRITER
    assert not (tmp_path / "tb").exists()


@pytest.mark.parametrize(
    "block, message",
    [
        ({"tensorboard_dri": "x"}, "tensorboard.tensorboard_dri is not a tensorboard setting"),
        ({"tensorboard_dir": "x", "tensorboard_queue_size": "10"}, "is '10', expected int"),
        ({"tensorboard_dir": "x", "log_timers_to_tensorboard": 1}, "is 1, expected bool"),
        ({"tensorboard_dir": "x", "tensorboard_queue_size": 0}, "must be at least 1"),
        (["x"], "tensorboard must be a mapping"),
    ],
)
def test_bad_tensorboard_blocks_are_one_line_naming_the_key(block, message):
    with pytest.raises(MindsftError, match=re.escape(message)):
        TensorBoardConfig.from_yaml(block, "f.yaml")


def test_a_block_without_a_folder_writes_nothing_and_is_not_reported(tb_run):
    yaml_path, _, _ = tb_run
    raw = yaml.safe_load(yaml_path.read_text())
    assert load_finetune_config(yaml_path).tensorboard.tensorboard_queue_size == 2
    raw["tensorboard"] = {"tensorboard_dir": None, "tensorboard_queue_size": 10}
    yaml_path.write_text(yaml.safe_dump(raw))
    cfg = load_finetune_config(yaml_path)
    assert cfg.tensorboard is None
    assert not [k for k in cfg.unsupported if k.startswith("tensorboard")]

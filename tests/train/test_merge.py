"""`merge-lora` over a run's checkpoint files: a trained tiny LoRA model merged
into its base gives the LoRA model's loss; a full run's "merge" takes rank 0's
weights after checking every other rank's replica of the same save."""

from pathlib import Path
from types import SimpleNamespace

import mindspore as ms
import numpy as np
import pytest
from mindsft.cli import main
from mindsft.convert.ckpt import CkptWriter
from mindsft.data.reader import MindRecordBatches
from mindsft.errors import MindsftError
from mindsft.models.loading import load_model
from mindsft.models.loss import shift_for_causal_lm, token_nll_sum
from mindsft.train.checkpoint import RunCheckpoints, verify
from mindsft.train.config import load_finetune_config
from mindsft.train.merge import replicas, resolve_checkpoint
from mindsft.train.trainer import RunPaths, Trainer

TINY_FULL = Path(__file__).resolve().parents[2] / "config" / "finetune" / "tiny_full.yaml"


def mean_loss(net, batch, config) -> float:
    """The token-weighted loss MindFormers trains on, of `net` (dropout off) on `batch`."""
    net.set_train(False)
    ids, labels = ms.Tensor(batch["input_ids"]), ms.Tensor(batch["labels"])
    tokens, targets = shift_for_causal_lm(ids, labels)  # (B, T)
    nll, count = token_nll_sum(
        net(tokens), targets, tokens, config.pad_token_id, config.ignore_token_id
    )
    return float(nll.asnumpy()) / float(count.asnumpy())


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, make_base_checkpoint, make_mindrecord, finetune_yaml):
    """A trained tiny LoRA run (rank 4, alpha 8): its folder, YAML, base checkpoint,
    data, and the LoRA model's loss on all 8 rows."""
    tmp = tmp_path_factory.mktemp("lora")
    base = make_base_checkpoint(tmp / "base.ckpt")
    data = make_mindrecord(tmp / "d.mindrecord", rows=8)
    yaml_path = finetune_yaml(tmp / "lora.yaml", lora={"lora_dropout": 0.1}, lr=2e-2, save_steps=4)
    trainer = Trainer(
        load_finetune_config(yaml_path), RunPaths(str(data), str(base), str(tmp / "run"))
    )
    trainer.setup()
    trainer.train()
    batch = next(iter(MindRecordBatches(data, 8)))  # all 8 rows
    loss = mean_loss(trainer.net, batch, trainer.model_config)
    return SimpleNamespace(
        dir=tmp / "run",
        yaml=yaml_path,
        base=base,
        batch=batch,
        loss=loss,
        config=trainer.model_config,
    )


def merge_argv(config, base, lora, out) -> list:
    return [
        "merge-lora",
        "--config",
        str(config),
        "--base_checkpoint",
        str(base),
        "--lora_checkpoint",
        str(lora),
        "--output_path",
        str(out),
    ]


def test_merged_checkpoint_loss_equals_lora_model_loss(lora_run, tmp_path):
    merged = tmp_path / "merged.ckpt"
    assert main(merge_argv(lora_run.yaml, lora_run.base, lora_run.dir, merged)) == 0
    config, batch = lora_run.config, lora_run.batch
    merged_loss = mean_loss(load_model(config, merged), batch, config)
    base_loss = mean_loss(load_model(config, lora_run.base), batch, config)
    assert merged_loss == pytest.approx(lora_run.loss, rel=1e-5)
    assert abs(base_loss - lora_run.loss) > 1e-3  # the LoRA update is not a no-op
    stored = ms.load_checkpoint(str(merged))
    assert set(stored) == set(ms.load_checkpoint(str(lora_run.base)))


def refused(capsys, argv, out: Path, *parts) -> None:
    """merge-lora exits 2 with one line holding `parts`, and writes nothing."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for part in parts:
        assert part in err, err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (None, ["holds 16 LoRA matrices", "has no model.model_config.pet_config"]),
        ({"lora_alpha": 16}, ["trained with lora_alpha 8", "has lora_alpha 16"]),
        ({"lora_rank": 8}, ["model.layers.0.attention.wq has A [4, 32]", "lora_rank 8"]),
        (
            {"target_modules": ".*wq|.*wv"},
            ["has LoRA on model.layers.0.attention.wk", "does not select"],
        ),
    ],
)
def test_a_config_that_does_not_match_the_lora_run_is_refused(
    lora_run, tmp_path, capsys, finetune_yaml, settings, expected
):
    other = finetune_yaml(tmp_path / "other.yaml", lora=settings)
    out = tmp_path / "merged.ckpt"
    refused(capsys, merge_argv(other, lora_run.base, lora_run.dir, out), out, *expected)


def test_a_base_that_does_not_fit_the_lora_pairs_names_the_file_and_tensor(
    lora_run, tmp_path, capsys
):
    wq = "model.layers.1.attention.wq.weight"
    stored = {n: p.asnumpy() for n, p in ms.load_checkpoint(str(lora_run.base)).items()}
    narrow = tmp_path / "narrow.ckpt"
    with CkptWriter(narrow) as out:
        for name, array in stored.items():
            out.write(name, array[:, :16] if name == wq else array)
    merged = tmp_path / "merged.ckpt"
    argv = merge_argv(lora_run.yaml, narrow, lora_run.dir, merged)
    refused(capsys, argv, merged, f"{narrow}: tensor {wq} has shape [32, 16]", "[32, 32]")
    lacking = tmp_path / "lacking.ckpt"
    with CkptWriter(lacking) as out:
        for name, array in stored.items():
            if name != wq:
                out.write(name, array)
    argv = merge_argv(lora_run.yaml, lacking, lora_run.dir, merged)
    refused(capsys, argv, merged, f"{lacking}: has no tensor {wq}")


def write_rank(train_dir, rank, weights, step=2):
    """A training checkpoint as a run writes it (checksum trailer included)."""
    return RunCheckpoints(train_dir, "tiny").save(rank, 1, step, weights, keep_max=0)


def test_full_run_merge_refuses_replicas_that_differ_and_writes_nothing(tmp_path, capsys):
    weights = {"model.norm_out.weight": np.ones(4, np.float32), "adam_m.x": np.zeros(2, np.float32)}
    rank0 = write_rank(tmp_path / "train", 0, weights)
    write_rank(
        tmp_path / "train", 1, {**weights, "model.norm_out.weight": np.full(4, 2, np.float32)}
    )
    merged = tmp_path / "merged.ckpt"
    argv = [
        "merge-lora",
        "--config",
        str(TINY_FULL),
        "--base_checkpoint",
        str(rank0),
        "--lora_checkpoint",
        str(tmp_path / "train"),
        "--output_path",
        str(merged),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rank_1" in err and "model.norm_out.weight" in err
    assert not merged.exists() and not list(tmp_path.glob(".merged*"))


def test_lora_checkpoint_resolves_to_rank0_newest_under_a_run_or_its_train_dir(tmp_path):
    weights = {"model.norm_out.weight": np.ones(4, np.float32)}
    run = tmp_path / "run"
    written = {step: write_rank(run / "train", 0, weights, step) for step in (2, 10, 4)}
    newest = written[10]  # by step number, not by name
    assert resolve_checkpoint(run) == resolve_checkpoint(run / "train") == newest
    assert resolve_checkpoint(newest) == newest  # a file is taken as it is
    with pytest.raises(MindsftError, match=r"no checkpoint/rank_0/\*\.ckpt under it"):
        resolve_checkpoint(tmp_path / "empty")


def test_replicas_are_the_other_ranks_files_of_the_same_save(tmp_path):
    weights = {"model.norm_out.weight": np.ones(4, np.float32)}
    rank0 = write_rank(tmp_path, 0, weights)
    others = [write_rank(tmp_path, r, weights) for r in (1, 2)]
    write_rank(tmp_path, 3, weights, step=4)  # rank 3 lacks this save
    assert replicas(rank0) == others
    assert replicas(others[0]) == [rank0, others[1]]
    loose = tmp_path / "elsewhere" / rank0.name
    loose.parent.mkdir()
    loose.write_bytes(rank0.read_bytes())
    assert replicas(loose) == []  # not inside a run's checkpoint folder


def test_merge_takes_the_newest_save_whose_checksums_verify_and_says_what_it_skipped(
    tmp_path, capsys
):
    weights = {"model.norm_out.weight": np.ones(4, np.float32)}
    run = tmp_path / "train"
    good = write_rank(run, 0, weights, step=2)
    write_rank(run, 1, weights, step=2)
    newest = write_rank(run, 0, weights, step=4)
    bad_replica = write_rank(run, 1, weights, step=4)
    data = bytearray(bad_replica.read_bytes())
    data[20:36] = bytes(16)
    bad_replica.write_bytes(bytes(data))
    assert resolve_checkpoint(run) == good
    assert capsys.readouterr().err.strip() == f"skipping {bad_replica}: {verify(bad_replica)}"
    newest.write_bytes(newest.read_bytes()[:-5])  # a file given by name must verify too
    with pytest.raises(MindsftError, match="cut short or corrupt"):
        resolve_checkpoint(newest)
    merged = tmp_path / "merged.ckpt"
    argv = ["merge-lora", "--config", str(TINY_FULL), "--base_checkpoint", str(good)]
    assert main([*argv, "--lora_checkpoint", str(run), "--output_path", str(merged)]) == 0
    assert ms.load_checkpoint(str(merged))["model.norm_out.weight"].asnumpy().tolist() == [1] * 4

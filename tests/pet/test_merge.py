"""Merging LoRA into base weights: exact against the LoRA paper's formula, base
names and dtypes kept, and `merge-lora` on a trained tiny model gives the same
loss as the unmerged LoRA model."""

from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindsft.cli import main
from mindsft.data.reader import MindRecordBatches
from mindsft.errors import MindsftError
from mindsft.models.loading import load_model
from mindsft.pet.lora import LORA_A, LORA_B
from mindsft.pet.merge import merge_state_dict, merge_weight
from mindsft.train.config import load_finetune_config
from mindsft.train.trainer import RunPaths, Trainer, evaluate_loss

from tests.train.support import finetune_yaml, make_base_checkpoint, make_mindrecord


def lora_tensors(seed, out=6, inp=5, r=3):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(out, inp)).astype(np.float32),
        rng.normal(size=(r, inp)).astype(np.float32),
        rng.normal(size=(out, r)).astype(np.float32),
    )


def test_merge_weight_is_exactly_w_plus_scaled_b_a_in_fp32():
    w, a, b = lora_tensors(0)
    want = w + np.float32(2.5) * (b @ a)
    got = merge_weight(w, a, b, 2.5)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    half = merge_weight(w.astype(np.float16), a, b, 2.5)  # computed in fp32, stored as fp16
    assert half.dtype == np.float16
    assert np.array_equal(
        half, (w.astype(np.float16).astype(np.float32) + 2.5 * (b @ a)).astype(np.float16)
    )


def test_merge_state_dict_keeps_base_names_and_drops_lora_keys():
    w, a, b = lora_tensors(1)
    norm = np.ones(6, np.float32)
    base = {"m.wq.weight": w, "m.norm.weight": norm}
    lora = {f"m.wq.{LORA_A}": a, f"m.wq.{LORA_B}": b}
    merged = merge_state_dict(base, lora, 0.5)
    assert list(merged) == ["m.wq.weight", "m.norm.weight"]
    assert merged["m.norm.weight"] is norm
    assert np.array_equal(merged["m.wq.weight"], w + np.float32(0.5) * (b @ a))
    assert np.array_equal(base["m.wq.weight"], w)  # the input is not modified
    with pytest.raises(MindsftError, match="no matching B"):
        merge_state_dict(base, {f"m.wq.{LORA_A}": a}, 0.5)


def test_merged_checkpoint_loss_equals_lora_model_loss(tmp_path, alpaca_fixture, llama2_tokenizer):
    base = make_base_checkpoint(tmp_path / "base.ckpt")
    data = make_mindrecord(tmp_path / "d.mindrecord", alpaca_fixture, llama2_tokenizer, rows=8)
    yaml_path = finetune_yaml(
        tmp_path / "lora.yaml", lora={"lora_dropout": 0.1}, lr=2e-2, save_steps=4
    )
    trainer = Trainer(
        load_finetune_config(yaml_path), RunPaths(str(data), str(base), str(tmp_path / "run"))
    )
    trainer.setup()
    trainer.train()
    batches = MindRecordBatches(data, 4, drop_remainder=False)
    lora_loss = evaluate_loss(trainer.net, batches)["loss"]

    merged = tmp_path / "merged.ckpt"
    argv = ["merge-lora", "--config", str(yaml_path), "--base_checkpoint", str(base)]
    assert (
        main([*argv, "--lora_checkpoint", str(tmp_path / "run"), "--output_path", str(merged)]) == 0
    )
    model = load_model(trainer.model_config, merged)
    merged_loss = evaluate_loss(model, batches)["loss"]
    base_loss = evaluate_loss(load_model(trainer.model_config, base), batches)["loss"]
    assert merged_loss == pytest.approx(lora_loss, rel=1e-5)
    assert abs(base_loss - lora_loss) > 1e-3  # the LoRA update is not a no-op
    stored = ms.load_checkpoint(str(merged))
    assert set(stored) == set(ms.load_checkpoint(str(base)))


TINY_FULL = Path(__file__).resolve().parents[2] / "config" / "finetune" / "tiny_full.yaml"


def _write_rank(train_dir, rank, weights):
    from mindsft.convert.ckpt import CkptWriter

    path = train_dir / "checkpoint" / f"rank_{rank}" / f"tiny_rank_{rank}-1_2.ckpt"
    path.parent.mkdir(parents=True)
    with CkptWriter(path) as out:
        for name, array in weights.items():
            out.write(name, array)
    return path


def test_full_run_merge_refuses_replicas_that_differ_and_writes_nothing(tmp_path, capsys):
    weights = {"model.norm_out.weight": np.ones(4, np.float32), "adam_m.x": np.zeros(2, np.float32)}
    rank0 = _write_rank(tmp_path / "train", 0, weights)
    _write_rank(
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

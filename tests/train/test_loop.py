"""The training loop on a tiny Llama and real Alpaca records: learning, frozen
base weights under LoRA, accumulation == larger batch, exact resume, NaN stop,
loss log and checkpoint layout, and one-line errors for bad input."""

import re
import shutil

import mindspore as ms
import numpy as np
import pytest
from mindsft.cli import main
from mindsft.errors import MindsftError
from mindsft.pet.lora import is_lora_param
from mindsft.train.checkpoint import RunCheckpoints


@pytest.fixture(scope="module")
def run(workdir, finetune_yaml, train_run):
    """run(name, resume=False, **yaml_kwargs): train workdir/name to the end."""

    def train(name, resume=False, **yaml_kwargs):
        config = finetune_yaml(workdir / f"{name}.yaml", **yaml_kwargs)
        data, base = workdir / "data.mindrecord", workdir / "base.ckpt"
        return train_run(config, data, base, workdir / name, resume)

    return train


def rank0_files(output_dir) -> list:
    return [f.path for f in RunCheckpoints(output_dir).files(0)]


def test_full_finetuning_with_accumulation_lowers_the_loss_and_equals_the_larger_batch(
    workdir, run, read_losses, tiny_model_config
):
    kwargs = {
        "epochs": 2,
        "lr": 1e-2,
        "schedule": "CosineWithWarmUpLR",
        "warmup_steps": 2,
        "keep_max": 2,
    }
    small = run("acc_small", batch_size=2, accumulation=2, **kwargs)
    big = run("acc_big", batch_size=4, accumulation=1, **kwargs)
    records, big_records = read_losses(workdir / "acc_small"), read_losses(workdir / "acc_big")
    assert [r["step"] for r in records] == list(range(1, 9))
    assert set(records[0]) == {
        "step",
        "epoch",
        "loss",
        "lr",
        "grad_norm",
        "tokens",
        "trained_tokens",
        "tokens_per_s",
        "elapsed",
    }
    assert records[0]["lr"] == 0.0 and records[2]["lr"] == pytest.approx(1e-2)
    assert records[-1]["epoch"] == 2 and records[0]["tokens"] == 4 * tiny_model_config["seq_length"]
    first, last = records[0]["loss"], np.mean([r["loss"] for r in records[-3:]])
    assert last < first - 1.0, (first, last)
    assert [r["trained_tokens"] for r in records] == [r["trained_tokens"] for r in big_records]
    # token-weighted accumulation: the same loss, gradient and update as one batch of 4
    np.testing.assert_allclose(
        [r["loss"] for r in records], [r["loss"] for r in big_records], rtol=1e-5
    )
    np.testing.assert_allclose(
        [r["grad_norm"] for r in records], [r["grad_norm"] for r in big_records], rtol=1e-4
    )
    for p, q in zip(big.net.get_parameters(), small.net.get_parameters(), strict=True):
        # Adam divides by sqrt(v): float-order noise in near-zero gradients shows up at ~1e-4
        np.testing.assert_allclose(p.asnumpy(), q.asnumpy(), rtol=1e-3, atol=5e-4)
    names = [p.name for p in rank0_files(workdir / "acc_small")]
    assert names == ["tiny_rank_0-2_2.ckpt", "tiny_rank_0-2_4.ckpt"]  # every 2 steps, newest 2 kept
    stored = ms.load_checkpoint(str(small.last_checkpoint))
    assert (
        "adam_m.model.layers.0.attention.wq.weight" in stored
        and stored["global_step"].asnumpy().item() == 8
    )


def test_lora_freezes_the_base_and_resume_after_step_k_reproduces_every_later_loss(
    workdir, run, read_losses
):
    kwargs = {
        "lora": {"lora_dropout": 0.1},
        "epochs": 2,
        "lr": 2e-2,
        "schedule": "CosineWithWarmUpLR",
    }
    kwargs["warmup_steps"] = 3
    trainer = run("straight", save_steps=3, **kwargs)
    base = ms.load_checkpoint(str(workdir / "base.ckpt"))
    moved = 0
    for p in trainer.net.get_parameters():
        if p.name in base:
            assert np.array_equal(p.asnumpy(), base[p.name].asnumpy()), p.name
        elif is_lora_param(p.name):
            moved += "lora_b" in p.name and bool(p.asnumpy().any())
    assert moved == 8  # every B of 2 layers x 4 targets has moved off zero
    saved = ms.load_checkpoint(str(trainer.last_checkpoint))
    assert not any(
        n.startswith("model.") and not is_lora_param(n) for n in saved
    )  # LoRA weights only

    straight = read_losses(workdir / "straight")
    # a run that died after step 10: its newest complete checkpoint is after step 9
    shutil.copytree(workdir / "straight", workdir / "killed")
    for ckpt in rank0_files(workdir / "killed"):
        if ckpt.name not in (
            "tiny_rank_0-1_3.ckpt",
            "tiny_rank_0-1_6.ckpt",
            "tiny_rank_0-2_1.ckpt",
        ):
            ckpt.unlink()
    log = workdir / "killed" / "loss.jsonl"
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines()[:10]))
    resumed_trainer = run("killed", resume=True, save_steps=3, **kwargs)
    assert resumed_trainer.last_checkpoint.name == "tiny_rank_0-2_8.ckpt"
    resumed = read_losses(workdir / "killed")
    assert [r["step"] for r in resumed] == list(range(1, 17))
    assert [r["loss"] for r in resumed[9:]] == [r["loss"] for r in straight[9:]]
    assert [r["lr"] for r in resumed] == [r["lr"] for r in straight]


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    workdir, run, read_losses
):
    with pytest.raises(MindsftError) as err:
        run("nan", lr=1e30, clip=False, save_steps=1)
    m = re.fullmatch(
        r"step (\d+): (loss|gradient norm) is (nan|inf); training stopped "
        r"\(last good checkpoint: (.*tiny_rank_0-1_\d\.ckpt)\)",
        str(err.value),
    )
    assert m, err.value
    kept = rank0_files(workdir / "nan")
    assert kept and str(kept[-1]) == m.group(4)
    losses = [r["loss"] for r in read_losses(workdir / "nan")]
    assert all(np.isfinite(losses)) and len(kept) == len(losses)
    for path in kept:  # nothing non-finite was ever saved
        stored = ms.load_checkpoint(str(path))
        assert all(np.isfinite(v.asnumpy()).all() for v in stored.values() if v.dtype == ms.float32)


def test_weights_that_overflow_are_never_saved(workdir, run):
    # a float32 learning rate of inf: the first update leaves weights non-finite
    # while the step's own loss and gradient norm are finite
    with pytest.raises(MindsftError) as err:
        run("overflow", lr=1e39, clip=False, save_steps=1)
    assert re.fullmatch(
        r"step 1: \S+ is not finite \(not saved\); training stopped "
        r"\(last good checkpoint: none written yet\)",
        str(err.value),
    ), err.value
    assert rank0_files(workdir / "overflow") == []
    assert not list((workdir / "overflow" / "checkpoint" / "rank_0").iterdir())


def finetune_argv(workdir, config, checkpoint="base.ckpt", *extra) -> list:
    """`mindsft finetune` on the workdir's data and a checkpoint in it, output to bad/."""
    return [
        "finetune",
        "--config",
        str(config),
        "--train_dataset_dir",
        str(workdir / "data.mindrecord"),
        "--load_checkpoint",
        str(workdir / checkpoint),
        "--output_dir",
        str(workdir / "bad"),
        *extra,
    ]


def cli(workdir, capsys, yaml_path, *extra):
    argv = finetune_argv(workdir, yaml_path, "base.ckpt", *extra)
    rc = main(argv)
    err = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("mindsft finetune: error:")
    ]
    return rc, err


def test_bad_input_is_one_line_and_a_non_zero_exit(
    workdir, capsys, tmp_path, finetune_yaml, make_base_checkpoint
):
    rc, err = cli(workdir, capsys, finetune_yaml(workdir / "bad.yaml"), "--use_parallel", "True")
    assert rc == 2 and len(err) == 1 and "needs msrun" in err[0]

    short = make_base_checkpoint(tmp_path / "short.ckpt")
    stored = ms.load_checkpoint(str(short))
    del stored["model.layers.1.ffn_norm.weight"], stored["lm_head.weight"]
    ms.save_checkpoint(
        [{"name": n, "data": p} for n, p in stored.items()], str(workdir / "base_short.ckpt")
    )
    yaml_path = finetune_yaml(workdir / "ok.yaml")
    assert main(finetune_argv(workdir, yaml_path, "base_short.ckpt")) == 2
    err = capsys.readouterr().err
    assert "missing 2 parameter(s)" in err and "lm_head.weight" in err and "ffn_norm" in err

    raw = (workdir / "ok.yaml").read_text().replace("seq_length: 32", "seq_length: 64")
    (workdir / "seq.yaml").write_text(raw)
    assert main(finetune_argv(workdir, workdir / "seq.yaml")) == 2
    assert (
        "dataset seq_length 32 differs from the config's seq_length 64" in capsys.readouterr().err
    )

    raw = (workdir / "ok.yaml").read_text().replace("FP32StateAdamWeightDecay", "SGDish")
    (workdir / "opt.yaml").write_text(raw)
    assert main(finetune_argv(workdir, workdir / "opt.yaml")) == 2
    assert "optimizer.type 'SGDish' is unknown" in capsys.readouterr().err

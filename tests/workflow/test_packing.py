"""`packing: true` on a run: it trains on the packed MindRecord of its split (the
held-out split stays padded) and its manifest says so."""

import json

import pytest


def packed_lora(config):
    """tiny_lora on packed rows, one epoch, from the tiny model as made (no pretraining)."""
    del config["models"]["tiny"]["pretrain"]
    config["runs"]["tiny_lora"]["packing"] = True
    config["runs"]["tiny_lora"]["overrides"]["runner_config.epochs"] = 1


def test_a_packed_run_plans_a_packed_train_split_and_a_padded_eval_split(
    tmp_path, write_config, snakemake
):
    write_config(tmp_path, packed_lora)
    out = snakemake(tmp_path, "-n", "-p", "results/tiny_lora/eval/metrics.json").stdout
    assert "results/data/tiny_alpaca/train/tiny_96.packed.mindrecord" in out
    assert "results/data/tiny_alpaca/eval/tiny_96.mindrecord," in out
    assert "results/data/tiny_alpaca/train/tiny_96.mindrecord," not in out  # nothing needs it


def test_packing_must_be_a_boolean(tmp_path, write_config, snakemake):
    write_config(tmp_path, lambda c: c["runs"]["tiny_lora"].update(packing="yes"))
    result = snakemake(tmp_path, "-n", check=False)
    assert "config: runs.tiny_lora.packing: 'yes' is not of type 'boolean'" in (
        result.stdout + result.stderr
    )


@pytest.mark.slow
def test_a_packed_run_trains_every_target_and_records_packing_in_its_manifest(
    tmp_path, write_config, snakemake
):
    write_config(tmp_path, packed_lora)
    snakemake(tmp_path, "--cores", "2", "results/tiny_lora/ckpt")
    manifest = json.loads((tmp_path / "results/tiny_lora/ckpt/manifest.json").read_text())
    assert manifest["packing"] is True
    assert manifest["inputs"]["train_data"]["path"].endswith("tiny_96.packed.mindrecord")
    data = tmp_path / "results/data/tiny_alpaca/train/tiny_96.packed.mindrecord"
    stats = json.loads(data.with_name(data.name + ".stats.json").read_text())
    assert stats["packing"] is True and stats["samples"] == 88
    losses = [
        json.loads(line)
        for line in (tmp_path / "results/tiny_lora/train/loss.jsonl").read_text().splitlines()
    ]
    # 2 workers x batch 4 take every packed row but the few the last step cannot fill
    trained = sum(r["trained_tokens"] for r in losses)
    assert 0.95 * stats["trained_tokens"] < trained <= stats["trained_tokens"]

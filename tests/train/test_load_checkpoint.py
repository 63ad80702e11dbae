"""`--load_checkpoint DIR` as MindFormers writes it (rank_0 ... rank_{n-1}: replicas
or one full rank_0), a folder of files loaded together, continuing LoRA training
from a LoRA checkpoint (mindsft's, MindFormers' base + mindpet_delta_lora_*), and
the bad inputs, each one line."""

import os

import mindspore as ms
import numpy as np
import pytest
from mindsft.convert.ckpt import CkptWriter
from mindsft.errors import MindsftError
from mindsft.inference.evaluate import evaluate_checkpoint
from mindsft.pet.config import is_lora_param
from mindsft.train.checkpoint import RunCheckpoints
from mindsft.train.config import load_finetune_config
from mindsft.train.load_checkpoint import check_auto_trans, weight_files
from mindsft.train.trainer import RunPaths, Trainer


@pytest.fixture(scope="module")
def made(tmp_path_factory, make_base_checkpoint, make_mindrecord, finetune_yaml):
    d = tmp_path_factory.mktemp("load")
    base = make_base_checkpoint(d / "base.ckpt")
    return {
        "dir": d,
        "base": base,
        "weights": {k: v.asnumpy() for k, v in ms.load_checkpoint(str(base)).items()},
        "data": make_mindrecord(d / "data.mindrecord", rows=8),
        "full": finetune_yaml(d / "full.yaml", save_steps=4),
        "lora": finetune_yaml(d / "lora.yaml", lora={"lora_dropout": 0.0}, save_steps=4, lr=5e-2),
    }


def mindformers_dir(root, weights: dict, steps_by_rank: dict) -> RunCheckpoints:
    """rank_r/llama_7b_rank_r-1_{step}.ckpt for each rank's steps, as MindFormers
    names them, every file holding `weights`."""
    ckpts = RunCheckpoints.at(root)
    ckpts.prefix = "llama_7b"
    for rank, steps in steps_by_rank.items():
        for step in steps:
            ckpts.save(rank, 1, step, weights, keep_max=0)
    return ckpts


def test_replica_folders_give_rank0s_newest_step_that_every_rank_holds(made, tmp_path):
    ckpts = mindformers_dir(tmp_path / "checkpoint", made["weights"], {0: [2, 4, 6], 1: [2, 4]})
    assert weight_files(tmp_path / "checkpoint") == [ckpts.file(0, 1, 4)]
    assert weight_files(tmp_path, rank=1, world=2) == [ckpts.file(0, 1, 4)]  # output dir above
    # the same resolution serves every command that loads weights
    by_folder = evaluate_checkpoint(made["full"], tmp_path / "checkpoint", made["data"])
    by_file = evaluate_checkpoint(made["full"], made["base"], made["data"])
    assert by_folder["loss"] == by_file["loss"]


def test_a_single_rank0_full_checkpoint_folder_loads(made, tmp_path):
    ckpts = mindformers_dir(tmp_path, made["weights"], {0: [3]})
    assert weight_files(tmp_path) == [ckpts.file(0, 1, 3)]


def test_replicas_that_differ_are_refused_naming_the_tensor(made, tmp_path):
    mindformers_dir(tmp_path, made["weights"], {0: [2]})
    other = dict(made["weights"])
    other["model.norm_out.weight"] = other["model.norm_out.weight"] + 1.0
    mindformers_dir(tmp_path, other, {1: [2]})
    with pytest.raises(
        MindsftError,
        match=r"rank_1-1_2\.ckpt: data-parallel replicas differ .* in model\.norm_out\.weight",
    ):
        weight_files(tmp_path)
    assert weight_files(tmp_path, rank=0, world=2)  # rank_1 is worker 1's to check


def test_a_corrupt_rank_file_is_refused(made, tmp_path):
    ckpts = mindformers_dir(tmp_path, made["weights"], {0: [2], 1: [2]})
    path = ckpts.file(1, 1, 2)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(MindsftError, match=r"rank_1-1_2\.ckpt: checksum mismatch"):
        weight_files(tmp_path)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, r"holds no rank_\* folders \(MindFormers' checkpoint layout\) and no \.ckpt files"),
        (
            {0: [2, 4], 1: [3]},
            r"the ranks have no step in common \(rank_0: 1_2, 1_4; rank_1: 1_3\)",
        ),
        (
            {0: [2], 2: [2]},
            r"rank folders must be rank_0 \.\.\. rank_\{n-1\}, found rank_0, rank_2",
        ),
    ],
)
def test_bad_folders_are_one_line(made, tmp_path, layout, message):
    mindformers_dir(tmp_path, {"x": np.zeros(2, np.float32)}, layout)
    with pytest.raises(MindsftError, match=message):
        weight_files(tmp_path)


def test_auto_trans_ckpt_refuses_a_strategy_that_is_not_pure_data_parallel():
    check_auto_trans(True, {"data_parallel": 8, "model_parallel": 1}, "c.yaml")
    check_auto_trans(False, {"model_parallel": 2}, "c.yaml")
    with pytest.raises(MindsftError, match="model_parallel 2, pipeline_stage 2: model-parallel"):
        check_auto_trans(True, {"model_parallel": 2, "pipeline_stage": 2}, "c.yaml")


def train(made, config, source, out):
    trainer = Trainer(
        load_finetune_config(config), RunPaths(str(made["data"]), str(source), str(out))
    )
    trainer.setup()
    trainer.train()
    return trainer


def lora_values(net) -> dict:
    return {p.name: p.asnumpy() for p in net.get_parameters() if is_lora_param(p.name)}


def continued(made, source, tmp_path):
    """A LoRA trainer set up from `source` (not trained)."""
    trainer = Trainer(
        load_finetune_config(made["lora"]),
        RunPaths(str(made["data"]), str(source), str(tmp_path / "next")),
    )
    trainer.setup()
    return trainer


def test_lora_training_continues_from_lora_checkpoints(made, tmp_path):
    first = train(made, made["lora"], made["base"], tmp_path / "first")
    trained = lora_values(first.net)
    assert any(v.any() for n, v in trained.items() if n.endswith("lora_b"))
    # mindsft's own: A/B and optimizer state; its base is found through its signature
    again = continued(made, first.last_checkpoint, tmp_path)
    assert all(np.array_equal(v, trained[n]) for n, v in lora_values(again.net).items())
    # MindFormers': the base and the LoRA matrices in one file
    joined = tmp_path / "mindformers_lora.ckpt"
    with CkptWriter(joined) as out:
        for name, array in {**made["weights"], **trained}.items():
            out.write(name, array)
    again = continued(made, joined, tmp_path)
    assert all(np.array_equal(v, trained[n]) for n, v in lora_values(again.net).items())
    # A/B only, beside the base in one folder
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "base.ckpt").write_bytes(made["base"].read_bytes())
    with CkptWriter(folder / "adapter.ckpt") as out:
        for name, array in trained.items():
            out.write(name, array)
    again = continued(made, folder, tmp_path)
    assert all(np.array_equal(v, trained[n]) for n, v in lora_values(again.net).items())
    with pytest.raises(MindsftError, match="holds LoRA matrices but no base weights; put the base"):
        continued(made, folder / "adapter.ckpt", tmp_path)
    full = Trainer(
        load_finetune_config(made["full"]),
        RunPaths(str(made["data"]), str(joined), str(tmp_path / "full")),
    )
    with pytest.raises(MindsftError, match="unmerged LoRA"):
        full.setup()


def test_rank_files_named_without_a_step_take_each_ranks_newest(made, tmp_path):
    for rank in (0, 1):
        folder = tmp_path / f"rank_{rank}"
        folder.mkdir()
        (folder / "old.ckpt").write_bytes(made["base"].read_bytes())
        os.utime(folder / "old.ckpt", (1, 1))
        (folder / "llama2_7b.ckpt").write_bytes(made["base"].read_bytes())
    assert weight_files(tmp_path) == [tmp_path / "rank_0" / "llama2_7b.ckpt"]

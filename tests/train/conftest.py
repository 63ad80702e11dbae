"""Fixtures of the training tests: a tiny seeded Llama saved as a MindFormers-named
checkpoint, a qa MindRecord of real Alpaca records tokenized with the real Llama 2
tokenizer, MindFormers-shaped finetune YAMLs, and readers of what a run leaves."""

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEQ = 32
TINY = {
    "type": "LlamaConfig",
    "seq_length": SEQ,
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "n_kv_heads": 2,
    "vocab_size": 32000,
    "intermediate_size": 64,
    "rms_norm_eps": 1.0e-5,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "ignore_token_id": -100,
    "compute_dtype": "float32",
}


@pytest.fixture(scope="session")
def tiny_model_config() -> dict:
    """MindFormers `model_config` of the tiny Llama the training tests use (GQA)."""
    return dict(TINY)


@pytest.fixture(scope="session")
def make_base_checkpoint():
    """make_base_checkpoint(path, seed=0): a randomly initialised tiny Llama saved
    with MindFormers parameter names."""
    import mindspore as ms
    import numpy as np
    from mindsft.models.config import LlamaConfig
    from mindsft.models.llama import LlamaForCausalLM

    def make(path: Path, seed: int = 0) -> Path:
        ms.set_seed(seed)
        net = LlamaForCausalLM(LlamaConfig.from_mindformers(TINY))
        rng = np.random.default_rng(seed)
        for p in net.get_parameters():  # seeded, independent of MindSpore's initializer state
            if "norm" in p.name:
                continue
            p.set_data(ms.Tensor(rng.normal(0.0, 0.05, p.shape).astype(np.float32)))
        ms.save_checkpoint(net, str(path))
        return path

    return make


def _qa_row(sp, rec: dict, seq: int) -> dict:
    """Prompt tokens labelled -100, response tokens labelled, padded with 0 to seq + 1."""
    import numpy as np

    prompt = [1] + sp.encode(f"USER: {rec['instruction']} {rec['input']} ASSISTANT:")
    answer = sp.encode(rec["output"]) + [2]
    ids = (prompt + answer)[: seq + 1]
    labels = ([-100] * len(prompt) + answer)[: seq + 1]
    pad = seq + 1 - len(ids)
    return {
        "input_ids": np.array(ids + [0] * pad, np.int32),
        "labels": np.array(labels + [-100] * pad, np.int32),
    }


@pytest.fixture(scope="session")
def make_mindrecord(alpaca_fixture, llama2_tokenizer):
    """make_mindrecord(path, rows=16, seq=32): a qa MindRecord of the first `rows`
    real Alpaca records, tokenized with the real Llama 2 tokenizer."""
    import sentencepiece as spm
    from mindspore.mindrecord import FileWriter

    def make(path: Path, rows: int = 16, seq: int = SEQ) -> Path:
        sp = spm.SentencePieceProcessor(model_file=str(llama2_tokenizer))
        records = json.loads(Path(alpaca_fixture).read_text())[:rows]
        writer = FileWriter(str(path), shard_num=1, overwrite=True)
        schema = {"type": "int32", "shape": [-1]}
        writer.add_schema({"input_ids": schema, "labels": schema})
        writer.write_raw_data([_qa_row(sp, rec, seq) for rec in records])
        writer.commit()
        return path

    return make


def _tiny_model_config(lora) -> dict:
    """TINY, with a LoRA pet_config of the given values when `lora` is a dict."""
    model_config = dict(TINY)
    if lora:
        model_config["pet_config"] = {
            "pet_type": "lora",
            "lora_rank": 4,
            "lora_alpha": 8,
            "lora_dropout": 0.0,
            "target_modules": ".*wq|.*wk|.*wv|.*wo",
            **lora,
        }
    return model_config


@pytest.fixture(scope="session")
def finetune_yaml():
    """finetune_yaml(path, *, lora=None, epochs=1, ...): a MindFormers-shaped finetune
    YAML for the tiny model; `lora` is a dict of pet_config values (None: full)."""
    import yaml

    def write(
        path: Path,
        *,
        lora=None,
        epochs=1,
        batch_size=2,
        lr=1e-2,
        schedule="ConstantWarmUpLR",
        warmup_steps=0,
        accumulation=1,
        save_steps=2,
        keep_max=10,
        shuffle=True,
        clip=True,
        seed=0,
        mode=0,
    ) -> Path:
        raw = {
            "seed": seed,
            "runner_config": {
                "epochs": epochs,
                "batch_size": batch_size,
                "sink_mode": True,
                "sink_size": 1,
                "gradient_accumulation_steps": accumulation,
            },
            "optimizer": {
                "type": "FP32StateAdamWeightDecay",
                "beta1": 0.9,
                "beta2": 0.999,
                "eps": 1.0e-8,
                "learning_rate": lr,
                "weight_decay": 0.01,
            },
            "lr_schedule": {
                "type": schedule,
                "learning_rate": lr,
                "warmup_steps": warmup_steps,
                "total_steps": -1,
            },
            "train_dataset": {
                "data_loader": {"type": "MindDataset", "dataset_dir": "", "shuffle": shuffle},
                "input_columns": ["input_ids", "labels"],
                "drop_remainder": True,
            },
            "runner_wrapper": {
                "type": "MFTrainOneStepCell",
                "scale_sense": 1.0,
                "use_clip_grad": clip,
            },
            "callbacks": [
                {"type": "MFLossMonitor"},
                {
                    "type": "CheckpointMonitor",
                    "prefix": "tiny",
                    "save_checkpoint_steps": save_steps,
                    "keep_checkpoint_max": keep_max,
                },
            ],
            "context": {"mode": mode, "device_target": "CPU"},
            "model": {
                "model_config": _tiny_model_config(lora),
                "arch": {"type": "LlamaForCausalLM"},
            },
        }
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, make_base_checkpoint, make_mindrecord):
    """A folder of the test module's own with `base.ckpt` (the tiny Llama) and
    `data.mindrecord` (16 rows)."""
    d = tmp_path_factory.mktemp("train")
    make_base_checkpoint(d / "base.ckpt")
    make_mindrecord(d / "data.mindrecord", rows=16)
    return d


@pytest.fixture(scope="session")
def train_run():
    """train_run(config, data, base, output_dir, resume=False): a Trainer set up from
    the finetune YAML `config` on MindRecord `data` and checkpoint `base`, resumed
    when asked, trained to the end; returns the trainer."""
    from mindsft.train.config import load_finetune_config
    from mindsft.train.trainer import RunPaths, Trainer

    def run(config, data, base, output_dir, resume=False):
        paths = RunPaths(str(data), str(base), str(output_dir))
        trainer = Trainer(load_finetune_config(config), paths)
        trainer.setup()
        if resume:
            trainer.resume()
        trainer.train()
        return trainer

    return run


@pytest.fixture(scope="session")
def read_losses():
    """read_losses(output_dir): the records of a run's loss.jsonl."""

    def read(output_dir: Path) -> list:
        lines = (Path(output_dir) / "loss.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line]

    return read


@pytest.fixture
def free_port() -> int:
    """A TCP port free on localhost right now, for msrun's scheduler."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def cli_env() -> dict:
    """Environment for running `mindsft` in a subprocess from the venv."""
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def data_parallel_inputs(tmp_path, make_base_checkpoint, make_mindrecord, finetune_yaml):
    """What a 2-worker run and its 1-worker reference read: `base` checkpoint,
    16-row MindRecord `data`, YAMLs `two` (batch 2 a worker) and `one` (batch 4)."""
    return SimpleNamespace(
        base=make_base_checkpoint(tmp_path / "base.ckpt"),
        data=make_mindrecord(tmp_path / "d.mindrecord", rows=16),
        two=finetune_yaml(tmp_path / "two.yaml", batch_size=2, lr=1e-2, save_steps=4),
        one=finetune_yaml(tmp_path / "one.yaml", batch_size=4, lr=1e-2, save_steps=4),
    )


@pytest.fixture(scope="session")
def assert_two_workers_match_the_single_run(read_losses):
    """assert_two_workers_match_the_single_run(out, single_dir): two data-parallel
    workers (batch 2 each) trained 4 steps whose losses equal one worker with batch
    4, and each rank wrote its final checkpoint."""
    import numpy as np
    from mindsft.train.checkpoint import RunCheckpoints

    def check(out: Path, single_dir: Path) -> None:
        losses = read_losses(out)
        assert [r["step"] for r in losses] == [1, 2, 3, 4]
        assert losses[0]["tokens"] == 2 * 2 * 32  # both workers' batches
        np.testing.assert_allclose(
            [r["loss"] for r in losses], [r["loss"] for r in read_losses(single_dir)], rtol=1e-5
        )
        ckpts = RunCheckpoints(out)
        ranks = [ckpts.newest(r).path for r in (0, 1)]
        assert [p.name for p in ranks] == ["tiny_rank_0-1_4.ckpt", "tiny_rank_1-1_4.ckpt"]

    return check

"""Training on what the step computes: batches cut to a few lengths (with LoRA dropout
masks that follow positions, so resume stays exact) and packed MindRecords, on real
Alpaca records preprocessed with the real Llama 2 tokenizer."""

import json
import shutil

import pytest
from mindsft.data.alpaca import convert_alpaca
from mindsft.data.batch import step_batch
from mindsft.data.preprocess import preprocess
from mindsft.data.reader import MindRecordBatches
from mindsft.errors import MindsftError
from mindsft.train.checkpoint import RunCheckpoints

SEQ = 256  # padded rows: the fixture's samples are cut at 257 tokens or padded to it
PACKED_SEQ = 512  # packed rows: about two samples each


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, alpaca_fixture, llama2_tokenizer, make_base_checkpoint):
    """base.ckpt, and the first 20 fixture records as padded.mindrecord (seq_length
    256) and packed.mindrecord (512)."""
    d = tmp_path_factory.mktemp("packed_training")
    make_base_checkpoint(d / "base.ckpt")
    (d / "alpaca.json").write_text(json.dumps(json.loads(alpaca_fixture.read_text())[:20]))
    convert_alpaca(d / "alpaca.json", d / "conversation.json")
    conversation = str(d / "conversation.json")
    preprocess("qa", conversation, llama2_tokenizer, SEQ, d / "padded.mindrecord")
    preprocess(
        "qa", conversation, llama2_tokenizer, PACKED_SEQ, d / "packed.mindrecord", packing=True
    )
    return d


@pytest.fixture(scope="module")
def run(workdir, finetune_yaml, train_run):
    """run(name, data, resume=False, seq=SEQ, **yaml_kwargs): train workdir/name on
    workdir/data at seq_length `seq`."""

    def train(name, data, resume=False, seq=SEQ, **yaml_kwargs):
        path = finetune_yaml(workdir / f"{name}.yaml", **yaml_kwargs)
        path.write_text(path.read_text().replace("seq_length: 32", f"seq_length: {seq}"))
        return train_run(path, workdir / data, workdir / "base.ckpt", workdir / name, resume)

    return train


def test_cut_batches_with_lora_dropout_resume_exactly(workdir, run, read_losses):
    lengths = {
        step_batch(b, 0, -100).tokens.shape[1]
        for b in MindRecordBatches(workdir / "padded.mindrecord", 1)
    }
    assert len(lengths) > 1 and max(lengths) == SEQ  # the run meets several cut lengths
    kwargs = {"lora": {"lora_dropout": 0.1}, "batch_size": 1, "save_steps": 3, "lr": 2e-2}
    run("cut", "padded.mindrecord", **kwargs)
    straight = read_losses(workdir / "cut")
    assert len(straight) == 20
    assert (
        sum(r["trained_tokens"] for r in straight)
        == json.loads((workdir / "padded.mindrecord.stats.json").read_text())["trained_tokens"]
        - sum(  # all targets, bar those whose input token is a pad id
            int(((b["labels"][:, 1:] != -100) & (b["input_ids"][:, :-1] == 0)).sum())
            for b in MindRecordBatches(workdir / "padded.mindrecord", 1)
        )
    )
    resumed_dir = workdir / "cut_resumed"  # as if the run had died after step 13
    shutil.copytree(workdir / "cut", resumed_dir)
    for ckpt in RunCheckpoints(resumed_dir).files(0):
        if ckpt.step > 12:
            ckpt.path.unlink()
    run("cut_resumed", "padded.mindrecord", resume=True, **kwargs)
    resumed = read_losses(resumed_dir)
    assert [r["step"] for r in resumed] == list(range(1, 21))
    assert [r["loss"] for r in resumed[12:]] == [r["loss"] for r in straight[12:]]


def test_packed_rows_train_every_target_once_an_epoch(workdir, run, read_losses):
    stats = json.loads((workdir / "packed.mindrecord.stats.json").read_text())
    assert stats["samples"] == 20 and stats["rows"] < 20
    kwargs = {"lora": {}, "seq": PACKED_SEQ, "save_steps": 100, "shuffle": False}
    run("packed", "packed.mindrecord", batch_size=1, **kwargs)
    losses = read_losses(workdir / "packed")
    assert len(losses) == stats["rows"] and losses[-1]["loss"] < losses[0]["loss"]
    rows = MindRecordBatches(workdir / "packed.mindrecord", 1)
    assert [r["trained_tokens"] for r in losses] == [step_batch(b, 0, -100).trained for b in rows]


def test_a_packed_mindrecord_at_another_seq_length_is_one_line(run):
    with pytest.raises(MindsftError, match="packed dataset seq_length 512 differs .* 256"):
        run("packed_256", "packed.mindrecord")

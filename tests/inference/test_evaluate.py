"""`mindsft evaluate` against HF transformers' loss on the same shifted, masked tokens."""

import copy
import json

import mindspore as ms
import numpy as np
import pytest
import yaml
from mindsft.cli import main
from mindsft.models.config import LlamaConfig
from mindspore.mindrecord import FileWriter

torch = pytest.importorskip("torch")

SEQ = 16
VOCAB = 96


def qa_rows(n, seed=0):
    """Rows as `mindsft preprocess` writes them: prompt labels -100, right padding 0."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, SEQ + 1), np.int32)
    labels = np.full((n, SEQ + 1), -100, np.int32)
    for i in range(n):
        length, prompt = rng.integers(8, SEQ + 2), rng.integers(2, 6)
        ids[i, :length] = np.concatenate([[1], rng.integers(3, VOCAB, length - 1)])
        labels[i, prompt:length] = ids[i, prompt:length]
    return ids, labels


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_hf_llama, ms_state_dict, qa_schema):
    """A tiny GQA model (HF reference + MindSpore checkpoint), a YAML config, a dataset."""
    root = tmp_path_factory.mktemp("eval")
    hf = tiny_hf_llama(4, 2, False, vocab=VOCAB)
    params = ms_state_dict(hf)
    ms.save_checkpoint(
        [{"name": n, "data": p} for n, p in params.items()], str(root / "model.ckpt")
    )
    config = LlamaConfig.from_hf(hf.config.to_dict())
    config.seq_length = SEQ
    (root / "run.yaml").write_text(yaml.safe_dump({"model": {"model_config": config.to_dict()}}))
    ids, labels = qa_rows(5)
    writer = FileWriter(str(root / "eval.mindrecord"), shard_num=1, overwrite=True)
    writer.add_schema(qa_schema, "qa")
    writer.write_raw_data([{"input_ids": a, "labels": b} for a, b in zip(ids, labels, strict=True)])
    writer.commit()
    return {"root": root, "hf": hf, "params": params, "ids": ids, "labels": labels}


def hf_loss(hf, ids, labels):
    """HF's mean cross entropy over MindFormers' mask: targets labels[:, 1:] not -100,
    inputs input_ids[:, :-1] not pad."""
    tokens, targets = ids[:, :-1], labels[:, 1:]
    with torch.no_grad():
        logits = hf(torch.tensor(tokens, dtype=torch.long)).logits
    mask = (targets != -100) & (tokens != 0)
    loss = torch.nn.functional.cross_entropy(
        logits[torch.tensor(mask)], torch.tensor(targets[mask]).long()
    )
    return float(loss), int(mask.sum())


def evaluate(run, *extra, checkpoint="model.ckpt", config="run.yaml", dataset="eval.mindrecord"):
    root = run["root"]
    out = root / "metrics.json"
    out.unlink(missing_ok=True)
    argv = [
        "evaluate",
        "--config",
        str(root / config),
        "--load_checkpoint",
        str(root / checkpoint),
        "--eval_dataset_dir",
        str(root / dataset),
        "--output",
        str(out),
        *extra,
    ]
    return main(argv), out


@pytest.mark.parametrize("batch_size", ["1", "2"])  # 2: the last batch is partial
def test_loss_matches_hf_within_1e5_relative(run, batch_size):
    rc, out = evaluate(run, "--batch_size", batch_size)
    assert rc == 0
    metrics = json.loads(out.read_text())
    loss, tokens = hf_loss(run["hf"], run["ids"], run["labels"])
    assert metrics["tokens"] == tokens and metrics["rows"] == 5 and metrics["seq_length"] == SEQ
    assert metrics["loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(np.exp(loss), rel=1e-5)
    assert metrics["wall_time_s"] > 0


def test_hf_config_json_evaluates_a_shorter_dataset(run):
    run["hf"].config.save_pretrained(run["root"] / "hf")  # max_position_embeddings 64 > 16
    rc, out = evaluate(run, config="hf")
    assert rc == 0 and json.loads(out.read_text())["loss"] == pytest.approx(
        hf_loss(run["hf"], run["ids"], run["labels"])[0], rel=1e-5
    )


def one_line_error(capsys, rc, out):
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists() and "\n" not in err
    return err


def test_missing_parameters_are_listed(run, capsys):
    params = {n: p for n, p in run["params"].items() if "layers.1.feed_forward" not in n}
    ms.save_checkpoint(
        [{"name": n, "data": p} for n, p in params.items()], str(run["root"] / "partial.ckpt")
    )
    err = one_line_error(capsys, *evaluate(run, checkpoint="partial.ckpt"))
    assert "missing 3 parameter(s)" in err and "model.layers.1.feed_forward.w1.weight" in err


def test_vocab_size_mismatch_is_one_line(run, capsys):
    params = dict(run["params"])
    name = "model.tok_embeddings.embedding_weight"
    params[name] = ms.Parameter(ms.Tensor(np.zeros((VOCAB + 4, 64), np.float32)), name=name)
    ms.save_checkpoint(
        [{"name": n, "data": p} for n, p in params.items()], str(run["root"] / "vocab.ckpt")
    )
    err = one_line_error(capsys, *evaluate(run, checkpoint="vocab.ckpt"))
    assert "vocab size 100" in err and "vocab_size 96" in err


def test_dataset_seq_length_other_than_the_yaml_is_one_line(run, capsys):
    doc = yaml.safe_load((run["root"] / "run.yaml").read_text())
    doc["model"]["model_config"]["seq_length"] = 32
    (run["root"] / "seq32.yaml").write_text(yaml.safe_dump(doc))
    err = one_line_error(capsys, *evaluate(run, config="seq32.yaml"))
    assert "eval.mindrecord" in err and "seq_length 16" in err and "32" in err


def test_evaluate_loss_on_a_built_net_keeps_its_names_and_mode(run, ms_llama_like):
    from mindsft.inference.evaluate import evaluate_loss

    net = ms_llama_like(run["hf"])
    names = list(net.parameters_dict())
    net.set_train(True)
    batches = [
        {"input_ids": run["ids"][i : i + 2], "labels": run["labels"][i : i + 2]} for i in (0, 2, 4)
    ]
    metrics = evaluate_loss(net, batches, "three batches")
    loss, tokens = hf_loss(run["hf"], run["ids"], run["labels"])
    assert metrics["tokens"] == tokens and metrics["loss"] == pytest.approx(loss, rel=1e-5)
    assert set(metrics) == {"loss", "perplexity", "tokens"}
    assert list(net.parameters_dict()) == names and net.training


def test_no_target_token_is_one_line_naming_the_data(run, ms_llama_like):
    from mindsft.errors import MindsftError
    from mindsft.inference.evaluate import evaluate_loss

    labels = np.full_like(run["labels"], -100)
    with pytest.raises(MindsftError, match=r"^held-out\.mindrecord: no target token survives"):
        evaluate_loss(
            ms_llama_like(run["hf"]),
            [{"input_ids": run["ids"], "labels": labels}],
            "held-out.mindrecord",
        )


@pytest.fixture(scope="module")
def packed(run, qa_schema):
    """Twelve qa samples at seq_length 64, padded and packed (the library's packer),
    and a YAML config of that length."""
    from mindsft.data.mindrecord_writer import MindRecordWriter
    from mindsft.data.packing import SCHEMA, Packer

    root, seq = run["root"], 64
    rng = np.random.default_rng(5)
    ids = np.zeros((12, seq + 1), np.int32)
    labels = np.full_like(ids, -100)
    for i in range(12):
        n, prompt = rng.integers(4, 41), rng.integers(1, 4)
        ids[i, :n] = np.concatenate([[1], rng.integers(3, VOCAB, n - 1)])
        labels[i, prompt:n] = ids[i, prompt:n]
    writer = FileWriter(str(root / "padded.mindrecord"), shard_num=1, overwrite=True)
    writer.add_schema(qa_schema, "qa")
    writer.write_raw_data([{"input_ids": a, "labels": b} for a, b in zip(ids, labels, strict=True)])
    writer.commit()
    packer = Packer(seq + 1, pad_id=0)
    blobs = packer.add(ids, labels) + packer.finish()
    with MindRecordWriter(root / "packed.mindrecord", "packed.mindrecord", SCHEMA, "qa") as out:
        out.write_rows(blobs)
        out.finish()
    doc = yaml.safe_load((root / "run.yaml").read_text())
    doc["model"]["model_config"]["seq_length"] = seq
    (root / "run64.yaml").write_text(yaml.safe_dump(doc))
    return {"ids": ids, "labels": labels, "rows": packer.rows}


def test_a_packed_mindrecord_gives_the_loss_and_tokens_of_the_padded_one(run, packed):
    assert packed["rows"] < 12
    results = {}
    for name in ("padded", "packed"):
        rc, out = evaluate(
            run, "--batch_size", "2", config="run64.yaml", dataset=f"{name}.mindrecord"
        )
        assert rc == 0
        results[name] = json.loads(out.read_text())
    loss, tokens = hf_loss(run["hf"], packed["ids"], packed["labels"])
    assert results["packed"]["tokens"] == results["padded"]["tokens"] == tokens
    assert results["packed"]["rows"] == packed["rows"] and results["padded"]["rows"] == 12
    assert results["packed"]["loss"] == pytest.approx(results["padded"]["loss"], rel=1e-5)
    assert results["packed"]["loss"] == pytest.approx(loss, rel=1e-5)


def test_a_packed_mindrecord_at_another_seq_length_is_one_line(run, packed, capsys):
    """Even under an HF config, whose length is a ceiling for padded rows."""
    config = copy.deepcopy(run["hf"].config)
    config.max_position_embeddings = 128
    config.save_pretrained(run["root"] / "hf128")
    err = one_line_error(capsys, *evaluate(run, config="hf128", dataset="packed.mindrecord"))
    assert "packed.mindrecord: packed dataset seq_length 64" in err and "128" in err
    rc, _ = evaluate(run, config="hf128", dataset="padded.mindrecord")
    assert rc == 0


def test_perplexity_overflows_to_inf_from_a_loss_of_700():
    from mindsft.inference.evaluate import perplexity

    assert perplexity(699.0) == pytest.approx(np.exp(699.0)) and perplexity(699.0) < np.inf
    assert perplexity(700.0) == perplexity(1e6) == float("inf")

"""`mindsft evaluate --metric em_f1`: greedy answers to alpaca records, batched,
scored with SQuAD's exact match and F1, every record's answer in metrics.json."""

import json

import mindspore as ms
import pytest
import yaml
from mindsft.cli import main
from mindsft.data.alpaca import alpaca_prompt
from mindsft.data.template import chat_prompt
from mindsft.inference.generate import Generator
from mindsft.inference.metrics import em_f1
from mindsft.models.config import LlamaConfig
from mindsft.models.llama import LlamaForCausalLM


@pytest.fixture(scope="module")
def answered(tmp_path_factory, alpaca_fixture, llama2_tokenizer):
    """A tiny random model over the Llama 2 vocabulary, and five real Alpaca records
    of which the first two have the model's own greedy answer as their output."""
    import sentencepiece as spm

    root = tmp_path_factory.mktemp("em_f1")
    config = LlamaConfig(
        vocab_size=32000, hidden_size=32, num_layers=1, num_heads=4, n_kv_heads=2,
        intermediate_size=64, seq_length=256,
    )  # fmt: skip
    ms.set_seed(0)
    model = LlamaForCausalLM(config)
    ms.save_checkpoint(model, str(root / "m.ckpt"))
    (root / "run.yaml").write_text(yaml.safe_dump({"model": {"model_config": config.to_dict()}}))
    records = json.loads(alpaca_fixture.read_text())[:5]
    sp = spm.SentencePieceProcessor(model_file=str(llama2_tokenizer))
    generate = Generator(model)
    own = [generate.complete(sp, chat_prompt(alpaca_prompt(r)), 8).text for r in records]
    for record, answer in zip(records[:2], own[:2], strict=True):
        record["output"] = answer
    (root / "heldout.json").write_text(json.dumps(records))
    return root, records, own


def test_em_f1_scores_the_greedy_answers_and_keeps_them_beside_the_scores(
    answered, llama2_tokenizer
):
    root, records, own = answered
    argv = ["evaluate", "--metric", "em_f1", "--config", root / "run.yaml"]
    argv += ["--load_checkpoint", root / "m.ckpt", "--eval_dataset_dir", root / "heldout.json"]
    argv += ["--model_file", llama2_tokenizer, "--output", root / "metrics.json"]
    assert main([str(a) for a in [*argv, "--max_new_tokens", 8, "--batch_size", 3]]) == 0
    metrics = json.loads((root / "metrics.json").read_text())
    answers = [row["answer"] for row in metrics["answers"]]
    assert answers == [text.strip() for text in own]  # batches of 3 == one at a time
    assert [row["reference"] for row in metrics["answers"]] == [r["output"] for r in records]
    assert [row["instruction"] for row in metrics["answers"]] == [r["instruction"] for r in records]
    expected = em_f1(answers, [r["output"] for r in records])
    assert metrics["exact_match"] == pytest.approx(expected["exact_match"])
    assert metrics["f1"] == pytest.approx(expected["f1"])
    assert [row["exact_match"] for row in metrics["answers"][:2]] == [1.0, 1.0]
    assert metrics["exact_match"] >= 40.0 and metrics["records"] == 5


def test_em_f1_without_a_tokenizer_is_one_line(answered, capsys):
    root, _, _ = answered
    argv = ["evaluate", "--metric", "em_f1", "--config", root / "run.yaml"]
    argv += ["--load_checkpoint", root / "m.ckpt", "--eval_dataset_dir", root / "heldout.json"]
    assert main([str(a) for a in [*argv, "--output", root / "none.json"]]) == 2
    assert "--metric em_f1 needs --model_file" in capsys.readouterr().err
    assert not (root / "none.json").exists()

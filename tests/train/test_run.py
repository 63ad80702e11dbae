"""`mindsft run`: run_mindformer.py's flags over the YAML, pretraining on wiki rows
(against HF's loss), evaluation during training, --run_mode eval and predict, and
the bad inputs, each one line and exit 2 with nothing left behind."""

import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
import yaml
from mindsft.cli import main
from mindsft.errors import MindsftError
from mindsft.inference.generate import Generator
from mindsft.inference.predict import read_prompts
from mindsft.models.config import LlamaConfig
from mindsft.models.loading import load_model
from mindsft.train.config import load_finetune_config
from mindsft.train.run import mf_bool, resolve

WIKI_SEQ = 32  # the tiny model's seq_length (tests/train/conftest.py)


def with_keys(path: Path, **top) -> Path:
    """Add top-level keys to a YAML file (do_eval, eval_step_interval, ...)."""
    raw = yaml.safe_load(path.read_text())
    raw.update(top)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run(*argv) -> int:
    return main(["run", *(str(a) for a in argv)])


@pytest.fixture(scope="module")
def work(tmp_path_factory, alpaca_fixture, llama2_tokenizer, make_mindrecord, tiny_model_config):
    """A tiny HF Llama and its MindSpore checkpoint, a wiki MindRecord of real text
    (the fixture's Alpaca outputs as paragraphs) and a qa MindRecord."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from mindsft.convert.names import hf_to_ms

    d = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    hc = transformers.LlamaConfig(**LlamaConfig.from_mindformers(tiny_model_config).to_hf_dict())
    hf = transformers.LlamaForCausalLM(hc).eval()
    params = [
        {"name": hf_to_ms(k), "data": ms.Tensor(v.detach().numpy().copy())}
        for k, v in hf.state_dict().items()
        if hf_to_ms(k) is not None
    ]
    ms.save_checkpoint(params, str(d / "base.ckpt"))
    records = json.loads(alpaca_fixture.read_text())[:6]
    (d / "wiki.txt").write_text("\n\n".join(r["output"] for r in records) + "\n")
    argv = ["preprocess", "--dataset_type", "wiki", "--input_glob", d / "wiki.txt"]
    argv += ["--model_file", llama2_tokenizer, "--seq_length", WIKI_SEQ]
    assert main([str(a) for a in [*argv, "--output_file", d / "wiki.mindrecord"]]) == 0
    make_mindrecord(d / "qa.mindrecord", rows=16)
    return {"dir": d, "hf": hf, "torch": torch}


def hf_nll(work, rows: np.ndarray) -> float:
    """HF's mean next-token NLL over every position of wiki rows (seq + 1 tokens)."""
    torch = work["torch"]
    tokens, targets = rows[:, :-1], rows[:, 1:]
    with torch.no_grad():
        logits = work["hf"](torch.tensor(tokens, dtype=torch.long)).logits
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), torch.tensor(targets, dtype=torch.long).reshape(-1)
    )
    return float(loss)


def test_pretraining_on_wiki_rows_lowers_the_loss_from_hf_s_nll(work, finetune_yaml, read_losses):
    d = work["dir"]
    cfg = with_keys(
        finetune_yaml(d / "pretrain.yaml", epochs=3, batch_size=4, shuffle=False, save_steps=100),
        run_mode="train",
    )
    out = d / "pretrain"
    argv = ["--config", cfg, "--train_dataset_dir", d / "wiki.mindrecord"]
    assert run(*argv, "--load_checkpoint", d / "base.ckpt", "--output_dir", out) == 0
    records = read_losses(out)
    from mindsft.data.reader import read_mindrecord

    rows = read_mindrecord(d / "wiki.mindrecord")["input_ids"]
    assert 0 not in rows  # no pad id: every position of a wiki row is a target
    assert records[0]["loss"] == pytest.approx(hf_nll(work, rows[:4]), rel=1e-5)
    assert np.mean([r["loss"] for r in records[-3:]]) < records[0]["loss"] - 1.0
    # from scratch (no checkpoint): the seeded initialisation, near-uniform predictions
    scratch = d / "scratch"
    assert run(*argv, "--output_dir", scratch, "--epochs", 1, "--num_samples", 4) == 0
    assert read_losses(scratch)[0]["loss"] == pytest.approx(np.log(32000), abs=0.05)


def test_eval_during_training_is_logged_at_its_intervals_and_leaves_training_alone(
    work, finetune_yaml, read_losses, capsys
):
    """LoRA with dropout, 2 epochs of 4 steps (--num_samples 8): eval at every 3rd
    step and after each epoch; the training losses equal a run without eval, and the last eval
    equals `--run_mode eval` and `mindsft evaluate` on the merged checkpoint."""
    d = work["dir"]
    lora = {"lora_dropout": 0.1}
    plain = finetune_yaml(d / "lora.yaml", lora=lora, epochs=2, batch_size=2, save_steps=100)
    cfg = with_keys(
        finetune_yaml(d / "lora_eval.yaml", lora=lora, epochs=2, batch_size=2, save_steps=100),
        eval_step_interval=3,
        eval_epoch_interval=1,
    )
    data = ["--train_dataset_dir", d / "qa.mindrecord", "--load_checkpoint", d / "base.ckpt"]
    data += ["--num_samples", 8]
    evals = ["--do_eval", "True", "--eval_dataset_dir", d / "qa.mindrecord"]
    assert main(["finetune", "--config", str(plain), *map(str, data), "--output_dir",
                 str(d / "no_eval")]) == 0  # fmt: skip
    assert run("--config", cfg, "--run_mode", "finetune", *data, *evals, "--output_dir",
               d / "with_eval") == 0  # fmt: skip
    logged = read_losses(d / "with_eval")
    steps = [r for r in logged if "loss" in r]
    assert [r["loss"] for r in steps] == [r["loss"] for r in read_losses(d / "no_eval")]
    eval_records = [r for r in logged if "eval_loss" in r]
    assert [(r["step"], r["epoch"]) for r in eval_records] == [(3, 1), (4, 1), (6, 2), (8, 2)]
    assert "loss" not in eval_records[0] and eval_records[0]["eval_tokens"] > 0
    assert "Eval result: {'loss': " in capsys.readouterr().err
    merged = d / "merged.ckpt"
    argv = ["merge-lora", "--config", cfg, "--base_checkpoint", d / "base.ckpt"]
    argv += ["--lora_checkpoint", d / "with_eval", "--output_path", merged]
    assert main([str(a) for a in argv]) == 0
    argv = ["--config", cfg, "--run_mode", "eval", "--load_checkpoint", merged]
    argv += ["--eval_dataset_dir", d / "qa.mindrecord"]
    assert run(*argv, "--output_dir", d / "eval") == 0
    assert run(*argv, "--output_dir", d / "eval8", "--num_samples", 8) == 0  # as in training
    by_run = json.loads((d / "eval/eval_result.json").read_text())
    first8 = json.loads((d / "eval8/eval_result.json").read_text())
    argv = ["evaluate", "--config", cfg, "--load_checkpoint", merged, "--eval_dataset_dir"]
    assert main([str(a) for a in [*argv, d / "qa.mindrecord", "--output", d / "e.json"]]) == 0
    by_evaluate = json.loads((d / "e.json").read_text())
    assert by_run["tokens"] == by_evaluate["tokens"] and by_run["rows"] == 16
    assert by_run["loss"] == pytest.approx(by_evaluate["loss"], rel=1e-6)
    assert first8["rows"] == 8 and first8["tokens"] == eval_records[-1]["eval_tokens"]
    assert first8["loss"] == pytest.approx(eval_records[-1]["eval_loss"], rel=1e-5)


def test_predict_prints_as_mindformers_and_writes_json_lines(
    work, finetune_yaml, llama2_tokenizer, capsys
):
    """Three prompts of different lengths from a JSON-list file, two at a time: the
    output is MindFormers' `text_generation_text` per batch, prompt included, and
    every row's tokens are what the prompt gives alone."""
    d = work["dir"]
    cfg = finetune_yaml(d / "predict.yaml")
    raw = yaml.safe_load(cfg.read_text())
    raw["model"]["model_config"].update(max_decode_length=24, do_sample=False)
    raw["processor"] = {
        "tokenizer": {"type": "LlamaTokenizer", "vocab_file": str(llama2_tokenizer)}
    }
    cfg.write_text(yaml.safe_dump(raw))
    prompts = ["I love Beijing, because", "Hi", "Give three tips for staying healthy."]
    (d / "prompts.json").write_text(json.dumps(prompts))
    argv = ["--config", cfg, "--run_mode", "predict", "--load_checkpoint", d / "base.ckpt"]
    argv += ["--predict_data", d / "prompts.json", "--predict_batch_size", 2]
    assert run(*argv, "--output_dir", d / "predict") == 0
    out = capsys.readouterr().out.splitlines()
    results = [json.loads(line) for line in (d / "predict/text_generation_result.jsonl").open()]
    assert [r["prompt"] for r in results] == prompts
    texts = [r["text_generation_text"] for r in results]
    batches = [{"text_generation_text": texts[:2]}, {"text_generation_text": texts[2:]}]
    assert out[0] == f"output result is: {batches}"
    assert out[-1] == ".........Predict Over!............."
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(llama2_tokenizer))
    config = LlamaConfig.from_mindformers(raw["model"]["model_config"])
    alone = Generator(load_model(config, d / "base.ckpt"))
    for prompt, result in zip(prompts, results, strict=True):
        ids = [1, *sp.encode(prompt)]
        assert result["prompt_ids"] == ids and result["text_generation_text"].startswith(prompt)
        new = result["output_ids"]
        assert new == alone(ids, 24 - len(ids))
        assert len(ids) + len(new) == 24 or result["stopped_at_eos"]  # max_decode_length


def test_predict_data_is_a_prompt_a_list_or_a_file(tmp_path):
    assert read_prompts(["Hello\\nworld"]) == ["Hello\nworld"]  # a typed \n is a newline
    assert read_prompts(["a", "b c"]) == ["a", "b c"]
    (tmp_path / "lines.txt").write_text("first prompt\n\n[second] prompt\\nnext\n")
    assert read_prompts([str(tmp_path / "lines.txt")]) == ["first prompt", "[second] prompt\nnext"]
    (tmp_path / "list.json").write_text('["one", "two\\nlines"]')
    assert read_prompts([str(tmp_path / "list.json")]) == ["one", "two\nlines"]
    (tmp_path / "bad.json").write_text('["one", 2]')
    with pytest.raises(MindsftError, match="bad.json: item 1 of the JSON list is int"):
        read_prompts([str(tmp_path / "bad.json")])
    with pytest.raises(MindsftError, match="is a directory"):
        read_prompts([str(tmp_path)])


def test_flags_override_the_yaml_and_the_yaml_fills_in_the_rest(tmp_path, finetune_yaml):
    cfg = with_keys(
        finetune_yaml(tmp_path / "c.yaml", epochs=3),
        run_mode="train",
        load_checkpoint="yaml.ckpt",
        do_eval=True,
        eval_dataset={"data_loader": {"dataset_dir": "yaml_eval.mindrecord"}},
    )
    args = Namespace(config=str(cfg), run_mode=None, epochs=None, do_eval=False, seed=7, mode=1)
    resolved = resolve(args)
    assert resolved.run.run_mode == "train" and resolved.run.load_checkpoint == "yaml.ckpt"
    assert resolved.run.eval_dataset_dir == "yaml_eval.mindrecord"
    assert resolved.run.do_eval is False and resolved.run.output_dir == "./output"
    assert resolved.train.epochs == 3 and resolved.train.seed == 7 and not resolved.train.jit
    assert mf_bool("TRUE") is True and mf_bool("false") is False
    with pytest.raises(Exception, match="expected True or False"):
        mf_bool("1")  # run_mindformer.py's str2bool takes true/false only


def test_mindformers_pretrain_yaml_loads_with_its_run_settings(mindformers_configs):
    cfg = load_finetune_config(mindformers_configs / "pretrain_llama2_7b.yaml")
    assert cfg.run.run_mode == "train" and cfg.run.do_eval is False
    assert (cfg.run.eval_step_interval, cfg.run.eval_epoch_interval) == (100, -1)
    assert cfg.run.metric == "PerplexityMetric" and cfg.train.gradient_accumulation_steps == 8
    assert not any("eval" in key for key in cfg.unsupported)


def test_a_named_resume_a_missing_run_mode_and_unhonoured_flags_are_refused(
    work, finetune_yaml, tmp_path, capsys
):
    from mindsft.train.run import run_command

    d = work["dir"]
    cfg = finetune_yaml(tmp_path / "c.yaml")
    args = Namespace(
        config=str(cfg),
        run_mode="finetune",
        train_dataset_dir=str(d / "qa.mindrecord"),
        load_checkpoint=str(d / "base.ckpt"),
        resume_training="last.ckpt",  # run_mindformer.py's str2bool_or_str: a file name
    )
    with pytest.raises(MindsftError, match="--resume_training last.ckpt: resuming from a named"):
        run_command(args)
    assert main(["run", "--config", str(cfg)]) == 2  # neither --run_mode nor run_mode:
    assert (
        "run_mode None: expected one of train, finetune, eval, predict" in capsys.readouterr().err
    )
    assert main(["run", "--config", str(cfg), "--trust_remote_code", "True"]) == 2
    assert "--trust_remote_code: not supported" in capsys.readouterr().err
    assert not (tmp_path / "output").exists()


BAD_INPUTS = {
    "predict without --predict_data": (
        ["run", "--run_mode", "predict", "--load_checkpoint", "{base}"],
        "--run_mode predict needs --predict_data",
    ),
    "an empty prompt file": (
        ["run", "--run_mode", "predict", "--load_checkpoint", "{base}", "--predict_data",
         "{empty}"],
        "empty.txt: empty prompt file",
    ),
    "train on a qa MindRecord": (
        ["run", "--run_mode", "train", "--train_dataset_dir", "{qa}"],
        "qa.mindrecord: a qa MindRecord (input_ids, labels); --run_mode train needs a wiki",
    ),
    "finetune on a wiki MindRecord": (
        ["run", "--run_mode", "finetune", "--train_dataset_dir", "{wiki}", "--load_checkpoint",
         "{base}"],
        "wiki.mindrecord: a wiki MindRecord (input_ids); --run_mode finetune needs a qa",
    ),
    "an unknown metric": (
        ["evaluate", "--load_checkpoint", "{base}", "--eval_dataset_dir", "{qa}", "--output",
         "{out}/m.json", "--metric", "bleu"],
        "--metric bleu: unknown (known: perplexity, em_f1)",
    ),
    "a flag mindsft cannot honour": (
        ["run", "--run_mode", "train", "--register_path", "research/my_model"],
        "--register_path: not supported",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_nothing_left_behind(
    case, work, finetune_yaml, tmp_path, cli_env
):
    d = work["dir"]
    (tmp_path / "empty.txt").write_text("\n")
    out = tmp_path / "out"
    places = {"base": d / "base.ckpt", "qa": d / "qa.mindrecord", "wiki": d / "wiki.mindrecord"}
    places.update(empty=tmp_path / "empty.txt", out=out)
    argv, message = BAD_INPUTS[case]
    argv = [a.format(**places) for a in argv] + [
        "--config",
        str(finetune_yaml(tmp_path / "c.yaml")),
    ]
    if argv[0] == "run":
        argv += ["--output_dir", str(out), "--use_parallel", "False"]
    done = subprocess.run(
        [sys.executable, "-m", "mindsft.cli", *argv],
        capture_output=True,
        text=True,
        env=cli_env,
        cwd=tmp_path,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if "WARNING" not in line]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not out.exists() and not (tmp_path / "output").exists()

"""Decoding with the KV cache against HF `generate`, and the `mindsft generate` command."""

import json

import mindspore as ms
import numpy as np
import pytest
import yaml
from mindsft.cli import main
from mindsft.data.template import chat_prompt
from mindsft.inference.generate import Generator, sample_token, top_p_keep
from mindsft.models.config import LlamaConfig
from mindsft.models.llama import LlamaForCausalLM

torch = pytest.importorskip("torch")

PROMPT = [1, 17, 42, 5, 77, 23, 9]


@pytest.mark.parametrize(("heads", "kv", "tied"), [(4, 4, False), (4, 2, True)])
def test_greedy_tokens_equal_hf_generate(heads, kv, tied, tiny_hf_llama, ms_llama_like):
    hf = tiny_hf_llama(heads, kv, tied)
    with torch.no_grad():
        ref = hf.generate(
            torch.tensor([PROMPT]),
            max_new_tokens=30,
            do_sample=False,
            eos_token_id=2,
            pad_token_id=0,
        )
    ours = Generator(ms_llama_like(hf))(PROMPT, max_new_tokens=30)
    assert ours == ref[0, len(PROMPT) :].tolist()


def test_generation_stops_at_eos_and_includes_it(tiny_hf_llama, ms_llama_like):
    hf = tiny_hf_llama(4, 2, False)
    generate = Generator(ms_llama_like(hf))
    free = generate(PROMPT, max_new_tokens=12)
    eos = free[3]  # pretend the 4th token is the end of sequence
    assert generate(PROMPT, max_new_tokens=12, eos_token_id=eos) == free[: free.index(eos) + 1]


def test_sampling_is_seeded_and_top_k_1_is_greedy(tiny_hf_llama, ms_llama_like):
    generate = Generator(ms_llama_like(tiny_hf_llama(4, 2, False)))
    greedy = generate(PROMPT, max_new_tokens=10)
    assert generate(PROMPT, max_new_tokens=10, do_sample=True, top_k=1, seed=3) == greedy
    assert generate(PROMPT, max_new_tokens=10, do_sample=True, top_p=1e-6, seed=3) == greedy
    a = generate(PROMPT, max_new_tokens=10, do_sample=True, temperature=1.5, seed=3)
    assert a == generate(PROMPT, max_new_tokens=10, do_sample=True, temperature=1.5, seed=3)
    assert a != generate(PROMPT, max_new_tokens=10, do_sample=True, temperature=1.5, seed=4)


HEAD = np.array([0.5, 0.3, 0.15, 0.05])


@pytest.mark.parametrize(
    ("top_k", "top_p", "kept"),
    [
        (2, 1.0, {0, 1}),
        (0, 0.4, {0}),
        (0, 0.7, {0, 1}),
        (0, 0.81, {0, 1, 2}),
        (0, 0.99, {0, 1, 2, 3}),
    ],
)
def test_top_k_and_top_p_keep_only_the_head_of_the_distribution(top_k, top_p, kept):
    rng = np.random.default_rng(0)
    assert {sample_token(np.log(HEAD), rng, 1.0, top_k, top_p) for _ in range(300)} == kept


def test_top_p_at_a_tie_keeps_the_head_that_reaches_it_whatever_the_last_bits():
    """0.5 + 0.3 lands on top_p 0.8 up to rounding: HF's rule (keep the smallest head
    whose mass reaches top_p) gives {0, 1}, and so do probabilities a few ulps off,
    as another CPU's exp and log may give them."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        probs = HEAD * (1 + rng.uniform(-1e-13, 1e-13, HEAD.size))
        assert set(np.flatnonzero(top_p_keep(probs / probs.sum(), 0.8))) == {0, 1}
    assert {sample_token(np.log(HEAD), rng, 1.0, 0, 0.8) for _ in range(300)} == {0, 1}


def test_top_p_keeps_what_hf_keeps_away_from_ties():
    from transformers.generation.logits_process import TopPLogitsWarper

    rng = np.random.default_rng(1)
    for top_p in (0.05, 0.3, 0.62, 0.9, 0.97):
        logits = rng.normal(0.0, 2.0, 64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        hf = TopPLogitsWarper(top_p)(None, torch.tensor(logits)[None])[0]
        assert np.array_equal(top_p_keep(probs, top_p), np.isfinite(hf.numpy()))


@pytest.fixture
def tokenizer_run(tmp_path, llama2_tokenizer):
    """A tiny random model over the real Llama 2 vocabulary (32,000 pieces)."""
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=32,
        num_layers=1,
        num_heads=4,
        n_kv_heads=2,
        intermediate_size=64,
        seq_length=256,
    )
    ms.set_seed(0)
    model = LlamaForCausalLM(config)
    ms.save_checkpoint(model, str(tmp_path / "m.ckpt"))
    (tmp_path / "run.yaml").write_text(
        yaml.safe_dump({"model": {"model_config": config.to_dict()}})
    )
    return tmp_path, model, llama2_tokenizer


def test_generate_command_prints_and_writes_the_greedy_completion(tokenizer_run, capsys):
    import sentencepiece as spm

    root, model, tok_path = tokenizer_run
    argv = [
        "generate",
        "--config",
        str(root / "run.yaml"),
        "--load_checkpoint",
        str(root / "m.ckpt"),
        "--model_file",
        str(tok_path),
        "--prompt",
        "Name three colours.",
        "--max_new_tokens",
        "8",
        "--output",
        str(root / "out.json"),
    ]
    assert main(argv) == 0
    record = json.loads((root / "out.json").read_text())
    tokenizer = spm.SentencePieceProcessor(model_file=str(tok_path))
    text = chat_prompt("Name three colours.", "vicuna_v1.1")
    assert text.endswith("USER: Name three colours. ASSISTANT:")
    assert record["prompt_ids"] == [1, *tokenizer.encode(text)]
    assert record["completion_ids"] == Generator(model)(record["prompt_ids"], 8)
    assert capsys.readouterr().out.strip() == record["completion"].strip()


def test_tokenizer_of_another_vocabulary_is_one_line(tokenizer_run, capsys, tmp_path):
    root, _, tok_path = tokenizer_run
    doc = yaml.safe_load((root / "run.yaml").read_text())
    doc["model"]["model_config"]["vocab_size"] = 32001
    (root / "big.yaml").write_text(yaml.safe_dump(doc))
    argv = [
        "generate",
        "--config",
        str(root / "big.yaml"),
        "--load_checkpoint",
        str(root / "m.ckpt"),
        "--model_file",
        str(tok_path),
        "--prompt",
        "hi",
    ]
    assert main(argv) == 2
    assert "32000 pieces" in capsys.readouterr().err


def test_the_decoding_step_compiles_once_per_cache_size(tiny_hf_llama, ms_llama_like):
    """Prompts whose cache fits the same multiple of CACHE_BLOCK positions share one
    compiled step; a longer one compiles one more (counted in MindSpore's compile cache)."""
    from mindspore.graph.api import ms_compile_cache

    generate = Generator(ms_llama_like(tiny_hf_llama(4, 2, False, seq=256)))

    def compiles(prompt, new_tokens):
        before = len(ms_compile_cache)
        generate(prompt, max_new_tokens=new_tokens, eos_token_id=-1)
        return len(ms_compile_cache) - before

    assert compiles(PROMPT, 6) == 1  # cache of 128 positions
    assert compiles([1, 3, 5], 20) == 0  # 128 again
    assert compiles(PROMPT, 130) == 1  # 256
    assert compiles(PROMPT[:2], 8) == 0


def test_complete_strips_the_eos_it_stopped_at(tokenizer_run):
    import sentencepiece as spm

    _, model, tok_path = tokenizer_run
    tokenizer = spm.SentencePieceProcessor(model_file=str(tok_path))
    generate = Generator(model)
    free = generate.complete(tokenizer, "Name three colours.", 6)
    assert free.prompt_ids == [1, *tokenizer.encode("Name three colours.")]
    assert not free.stopped_at_eos and free.text == tokenizer.decode(free.ids)
    eos = free.ids[2]  # pretend the third new token ends the answer
    model.config.eos_token_id = eos
    try:
        done = generate.complete(tokenizer, "Name three colours.", 6)
    finally:
        model.config.eos_token_id = 2
    stop = free.ids.index(eos)
    assert done.ids == free.ids[: stop + 1] and done.stopped_at_eos
    assert done.text == tokenizer.decode(free.ids[:stop])


PROMPTS = [[1, 17, 42], [1, 5, 77, 23, 9, 60, 31], [1, *range(40, 51)]]  # 3, 7 and 12 tokens


def test_batched_greedy_equals_one_prompt_at_a_time(tiny_hf_llama, ms_llama_like):
    generate = Generator(ms_llama_like(tiny_hf_llama(4, 2, True)))
    alone = [generate(p, max_new_tokens=20, eos_token_id=-1) for p in PROMPTS]
    assert generate.batch(PROMPTS, 20, eos_token_id=-1) == alone
    # a row that stops early, and budgets per row, leave the other rows as they were
    eos = alone[1][4]
    stopped = [generate(p, max_new_tokens=20, eos_token_id=eos) for p in PROMPTS]
    assert stopped[1] == alone[1][: alone[1].index(eos) + 1]
    assert generate.batch(PROMPTS, 20, eos_token_id=eos) == stopped
    budgets = generate.batch(PROMPTS, [5, 20, 9], eos_token_id=-1)
    assert budgets == [alone[0][:5], alone[1], alone[2][:9]]


def test_kv_cache_with_left_padding_equals_the_full_forward_pass(tiny_hf_llama, ms_llama_like):
    """Every decoding step's logits, for every left-padded row, equal the model's
    plain forward pass (no cache, no padding) over that row's tokens so far."""
    model = ms_llama_like(tiny_hf_llama(4, 2, False))
    generate = Generator(model)
    logits, state = generate.start(PROMPTS, 4)
    assert list(state.pads) == [9, 5, 0]
    rows = [list(p) for p in PROMPTS]
    for _ in range(4):
        for b, row in enumerate(rows):
            full = model(ms.Tensor(np.asarray([row], np.int32)))[0, -1].asnumpy()
            np.testing.assert_allclose(logits[b], full, atol=2e-5, rtol=1e-5)
        chosen = [int(np.argmax(row)) for row in logits]
        for row, token in zip(rows, chosen, strict=True):
            row.append(token)
        logits = generate.advance(state, chosen)

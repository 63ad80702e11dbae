"""The MindSpore Llama against HF transformers' LlamaForCausalLM (the reference)."""

import mindspore as ms
import numpy as np
import pytest
from mindsft.convert.names import hf_to_ms
from mindsft.errors import MindsftError
from mindsft.models.config import LlamaConfig
from mindsft.models.llama import LlamaForCausalLM

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SHAPES = {  # id: (num_heads, n_kv_heads, tie_word_embeddings)
    "mha_untied": (4, 4, False),
    "gqa_tied": (4, 2, True),
    "mqa_untied": (4, 1, False),
}


def hf_logits(hf, ids) -> np.ndarray:
    with torch.no_grad():
        return hf(torch.tensor(ids, dtype=torch.long)).logits.numpy()


def random_ids(vocab, shape, seed=1):
    return np.random.default_rng(seed).integers(0, vocab, shape).astype(np.int32)


@pytest.mark.parametrize("shape", SHAPES)
def test_full_length_logits_in_two_query_halves_match_hf(shape, tiny_hf_llama, ms_llama_like):
    heads, kv, tied = SHAPES[shape]
    hf = tiny_hf_llama(heads, kv, tied, seq=128)
    model = ms_llama_like(hf)
    assert model.split_halves
    ids = random_ids(96, (2, 128))
    np.testing.assert_allclose(
        model(ms.Tensor(ids)).asnumpy(), hf_logits(hf, ids), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_logits_match_hf_within_1e4(shape, tiny_hf_llama, ms_llama_like):
    heads, kv, tied = SHAPES[shape]
    hf = tiny_hf_llama(heads, kv, tied)
    model = ms_llama_like(hf)
    ids = random_ids(96, (2, 50))
    out = model(ms.Tensor(ids))
    assert out.dtype == ms.float32 and out.shape == (2, 50, 96)
    np.testing.assert_allclose(out.asnumpy(), hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_graph_mode_jit_gives_the_same_logits_as_hf(tiny_hf_llama, ms_llama_like):
    hf = tiny_hf_llama(4, 2, False)
    model = ms_llama_like(hf)
    ids = random_ids(96, (3, 33))
    out = ms.jit(model.construct)(ms.Tensor(ids)).asnumpy()
    np.testing.assert_allclose(out, hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_parameter_names_are_mindformers_and_tied_model_has_no_lm_head():
    untied = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=32,
            num_layers=1,
            num_heads=4,
            n_kv_heads=2,
            intermediate_size=40,
            seq_length=16,
        )
    )
    names = set(untied.parameters_dict())
    expected = {"model.tok_embeddings.embedding_weight", "model.norm_out.weight", "lm_head.weight"}
    expected |= {f"model.layers.0.attention.{w}.weight" for w in ("wq", "wk", "wv", "wo")}
    expected |= {f"model.layers.0.feed_forward.{w}.weight" for w in ("w1", "w2", "w3")}
    expected |= {"model.layers.0.attention_norm.weight", "model.layers.0.ffn_norm.weight"}
    assert names == expected
    assert untied.parameters_dict()["model.layers.0.attention.wk.weight"].shape == (16, 32)
    assert isinstance(untied.model.layers[0].attention.wq, ms.nn.Dense)
    tied = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=32,
            num_layers=1,
            num_heads=4,
            intermediate_size=40,
            seq_length=16,
            tie_word_embeddings=True,
        )
    )
    assert set(tied.parameters_dict()) == expected - {"lm_head.weight"}


def test_kv_cache_decoding_reproduces_the_full_forward(tiny_hf_llama, ms_llama_like):
    hf = tiny_hf_llama(4, 2, False)
    model = ms_llama_like(hf)
    ids = random_ids(96, (1, 20))
    full = model(ms.Tensor(ids)).asnumpy()
    logits, cache = model.forward_cached(ms.Tensor(ids[:, :12]))
    steps = [logits.asnumpy()]
    logits, cache = model.forward_cached(
        ms.Tensor(ids[:, 12:15]), cache
    )  # several new tokens at once
    steps.append(logits.asnumpy())
    for t in range(15, 20):
        logits, cache = model.forward_cached(ms.Tensor(ids[:, t : t + 1]), cache)
        steps.append(logits.asnumpy())
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5, rtol=0)
    assert cache.length == 20 and cache.layers[0][0].shape == (1, 2, 20, 16)  # (B, n_kv, S, hd)


def test_float16_compute_stays_close_to_float32_and_returns_float32_logits(
    tiny_hf_llama, ms_state_dict, ms_llama_like
):
    hf = tiny_hf_llama(4, 2, False)
    ids = random_ids(96, (2, 24))
    fp32 = ms_llama_like(hf)(ms.Tensor(ids)).asnumpy()
    config = LlamaConfig(
        **{**LlamaConfig.from_hf(hf.config.to_dict()).to_dict(), "compute_dtype": "float16"}
    )
    half = LlamaForCausalLM(config)
    ms.load_param_into_net(half, ms_state_dict(hf))
    out = half(ms.Tensor(ids))
    assert out.dtype == ms.float32
    assert np.abs(out.asnumpy() - fp32).max() < 2e-2
    assert np.abs(out.asnumpy() - fp32).max() > 0  # it really computed in half precision


def test_bfloat16_on_cpu_is_refused_with_one_line():
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        num_layers=1,
        num_heads=4,
        intermediate_size=40,
        seq_length=16,
        compute_dtype="bf16",
    )
    with pytest.raises(MindsftError, match="bfloat16"):
        LlamaForCausalLM(config)


@pytest.mark.parametrize(("dtype", "atol"), [("fp32", 1e-4), ("bf16", 0.05)])
def test_checkpoint_from_mindsft_convert_weight_loads_and_matches_hf(
    tmp_path, dtype, atol, tiny_hf_llama
):
    from mindsft.cli import main
    from mindsft.models.loading import load_model

    hf = tiny_hf_llama(4, 2, False)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    out = tmp_path / f"{dtype}.ckpt"
    argv = [
        "convert-weight",
        "--model",
        "llama",
        "--input_path",
        str(tmp_path / "hf"),
        "--output_path",
        str(out),
    ]
    assert main([*argv, "--dtype", dtype]) == 0
    model = load_model(
        LlamaConfig.from_hf(tmp_path / "hf"), out
    )  # bf16 weights are cast to float32
    ids = random_ids(96, (2, 30))
    np.testing.assert_allclose(
        model(ms.Tensor(ids)).asnumpy(), hf_logits(hf, ids), atol=atol, rtol=0
    )


@pytest.mark.parametrize(
    "length,compiled",
    [(21, False), (129, False), (129, True)],
    ids=["short", "full_length_halves", "full_length_halves_jit"],
)
def test_gradients_match_hf_autograd_including_the_tied_embedding(
    length, compiled, tiny_hf_llama, ms_llama_like
):
    """Short rows take the one-block attention; rows of the full seq_length (128,
    after the shift) take the two query halves, PyNative and compiled."""
    from mindsft.models.loss import shift_for_causal_lm, token_nll_sum

    hf = tiny_hf_llama(4, 2, True, seq=128)
    model = ms_llama_like(hf)
    assert model.split_halves
    ids = random_ids(96, (2, length), seed=5)
    # pad only as right padding: HF's padding_idx keeps lookups of id 0 out of its gradient
    ids[ids == 0] = 7
    ids[1, -4:] = 0  # padding: masked out of the loss

    def mean_loss(batch):
        tokens, targets = shift_for_causal_lm(batch, batch)
        total, count = token_nll_sum(model(tokens), targets, tokens)
        return total / count

    params = model.trainable_params()
    grad_fn = ms.value_and_grad(mean_loss, None, params)
    loss, grads = (ms.jit(grad_fn) if compiled else grad_fn)(ms.Tensor(ids))
    tokens, targets = torch.tensor(ids[:, :-1]).long(), torch.tensor(ids[:, 1:]).long()
    targets[tokens == 0] = -100
    ref = torch.nn.functional.cross_entropy(hf(tokens).logits.reshape(-1, 96), targets.reshape(-1))
    ref.backward()
    assert float(loss.asnumpy()) == pytest.approx(ref.item(), rel=1e-5)
    hf_grads = {hf_to_ms(n): p.grad.numpy() for n, p in hf.named_parameters()}
    for param, grad in zip(params, grads, strict=True):
        np.testing.assert_allclose(
            grad.asnumpy(), hf_grads[param.name], atol=2e-6, err_msg=param.name
        )


@pytest.mark.parametrize(
    "length, rows, chunks",
    [
        (128, [[20, 7, 1, 13], [123]], 0),
        (50, [[20, 7, 1, 13], [45]], 0),
        (256, [[20, 7, 1, 90, 60], [64, 64, 64, 60]], 4),
    ],
    ids=["halves", "one_block", "pairs_of_quarters"],
)
def test_packed_rows_give_each_sample_the_logits_hf_gives_it_alone(
    length, rows, chunks, tiny_hf_llama, ms_llama_like
):
    """Attention within each sample (block-diagonal causal) and rotary positions that
    restart per sample, in each attention layout: two query halves, one block, and
    pairs of quarter rows (every sample starts at most a quarter before its tokens')."""
    from mindsft.data.packing import sample_positions

    hf = tiny_hf_llama(4, 2, False, seq=256)
    model = ms_llama_like(hf)
    ids = random_ids(96, (2, length), seed=3)
    segments, positions = [], []
    for lengths in rows:  # the rest of a row is padding
        segment, position, _ = sample_positions(np.cumsum(lengths), length)
        segments.append(segment)
        positions.append(position)
    h = model.hidden(
        ms.Tensor(ids), ms.Tensor(np.stack(positions)), ms.Tensor(np.stack(segments)), chunks
    )
    logits = model.logits(h, 2, length).asnumpy()
    for r, lengths in enumerate(rows):
        start = 0
        for n in lengths:
            alone = hf_logits(hf, ids[r : r + 1, start : start + n])[0]
            np.testing.assert_allclose(logits[r, start : start + n], alone, atol=1e-4, rtol=0)
            start += n


def test_selected_logits_are_the_rows_of_the_full_logits(tiny_hf_llama, ms_llama_like):
    for tied in (False, True):
        model = ms_llama_like(tiny_hf_llama(4, 2, tied))
        ids = random_ids(96, (2, 30), seed=4)
        h = model.hidden(ms.Tensor(ids))
        index = np.array([59, 0, 31, 31, 7], np.int32)
        full = model.logits(h, 2, 30).asnumpy().reshape(60, 96)
        picked = model.selected_logits(h, ms.Tensor(index)).asnumpy()
        np.testing.assert_allclose(picked, full[index], atol=1e-6, rtol=0)

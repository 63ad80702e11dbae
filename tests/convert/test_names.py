import pytest
from mindsft.convert.names import HF_TO_MS, hf_to_ms, ms_to_hf
from mindsft.errors import MindsftError


def test_hf_names_map_to_mindformers_names():
    assert hf_to_ms("model.embed_tokens.weight") == "model.tok_embeddings.embedding_weight"
    assert (
        hf_to_ms("model.layers.17.self_attn.q_proj.weight") == "model.layers.17.attention.wq.weight"
    )
    assert (
        hf_to_ms("model.layers.3.mlp.gate_proj.weight") == "model.layers.3.feed_forward.w1.weight"
    )
    assert (
        hf_to_ms("model.layers.3.mlp.down_proj.weight") == "model.layers.3.feed_forward.w2.weight"
    )
    assert hf_to_ms("model.layers.3.mlp.up_proj.weight") == "model.layers.3.feed_forward.w3.weight"
    assert hf_to_ms("model.norm.weight") == "model.norm_out.weight"
    assert hf_to_ms("model.layers.0.self_attn.rotary_emb.inv_freq") is None


def test_reverse_map_inverts_every_kept_name():
    for hf, ms in HF_TO_MS.items():
        if ms is not None:
            hf_key, ms_key = hf.format(5), ms.format(5)
            assert ms_to_hf(ms_key) == hf_key


def test_unknown_name_is_an_error_naming_the_key():
    with pytest.raises(MindsftError, match="model.layers.0.self_attn.qkv.weight"):
        hf_to_ms("model.layers.0.self_attn.qkv.weight")

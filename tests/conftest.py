"""Shared test helpers: the shared fixtures (never copied into the project)."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"


def shared_fixture(name: str) -> Path:
    """Path of a file in ../shared/fixtures: skip where it is absent, fail under CI."""
    path = SHARED_FIXTURES / name
    if not path.exists():
        msg = f"shared fixture {path} is absent (../shared is not beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def alpaca_fixture() -> Path:
    """999 real Stanford Alpaca records."""
    return shared_fixture("alpaca_en_demo.json")


@pytest.fixture(scope="session")
def llama2_tokenizer() -> Path:
    """The real Llama 2 SentencePiece model (32,000 pieces)."""
    return shared_fixture("llama2_tokenizer.model")


@pytest.fixture(scope="session")
def mindformers_configs() -> Path:
    """MindFormers' own Llama2-7B finetune and LoRA YAMLs (v1.5.0)."""
    return shared_fixture("mindformers_configs")


@pytest.fixture(scope="session")
def sft_guide_commands() -> list:
    """Every command of MindFormers' SFT guide as the guide prints it, in order."""
    text = shared_fixture("mindformers_sft_guide_commands.txt").read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


# ---- models, inference, data (helper A2): tiny HF reference models and MindRecords


@pytest.fixture(scope="session")
def tiny_hf_llama():
    """make(num_heads=4, n_kv_heads=2, tied=False, vocab=96, seed=0, seq=64): a seeded
    random HF LlamaForCausalLM, 2 layers of width 16 * num_heads (norm weights
    randomised too, so a wrong norm cannot hide behind ones)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    def make(num_heads=4, n_kv_heads=2, tied=False, vocab=96, seed=0, seq=64):
        torch.manual_seed(seed)
        hc = transformers.LlamaConfig(
            vocab_size=vocab,
            hidden_size=16 * num_heads,
            num_hidden_layers=2,
            num_attention_heads=num_heads,
            num_key_value_heads=n_kv_heads,
            intermediate_size=88,
            max_position_embeddings=seq,
            rope_theta=20000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=tied,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
        hf = transformers.LlamaForCausalLM(hc).eval()
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if "norm" in name:
                    p.normal_(1.0, 0.2)
        return hf

    return make


@pytest.fixture(scope="session")
def ms_state_dict():
    """convert(hf) -> {MindFormers name: MindSpore Parameter} of an HF model's weights."""
    import mindspore as ms
    from mindsft.convert.names import hf_to_ms

    def convert(hf) -> dict:
        out = {}
        for key, value in hf.state_dict().items():
            name = hf_to_ms(key)
            if name is not None:
                out[name] = ms.Parameter(ms.Tensor(value.detach().numpy().copy()), name=name)
        return out

    return convert


@pytest.fixture(scope="session")
def ms_llama_like(ms_state_dict):
    """make(hf, **config_overrides) -> our LlamaForCausalLM with the HF model's config
    and weights, in inference mode."""
    import mindspore as ms
    from mindsft.models.config import LlamaConfig
    from mindsft.models.llama import LlamaForCausalLM

    def make(hf, **overrides):
        config = LlamaConfig.from_hf({**hf.config.to_dict(), **overrides})
        model = LlamaForCausalLM(config)
        params = ms_state_dict(hf)
        if config.tie_word_embeddings:
            params.pop("lm_head.weight", None)
        not_loaded, unused = ms.load_param_into_net(model, params, strict_load=True)
        assert not not_loaded and not unused
        model.set_train(False)
        return model

    return make


@pytest.fixture(scope="session")
def qa_schema() -> dict:
    """The qa MindRecord schema `mindsft preprocess` writes."""
    return {
        "input_ids": {"type": "int32", "shape": [-1]},
        "labels": {"type": "int32", "shape": [-1]},
    }

"""HF folder <-> MindSpore checkpoint: names, shapes, values, dtypes, round trip."""

import json
import shutil

import numpy as np
import pytest
import yaml
from mindsft.cli import main
from mindsft.convert.ckpt import CkptWriter, iter_ckpt, scan_ckpt
from mindsft.convert.names import hf_to_ms
from mindsft.convert.safetensors_io import read_header
from mindsft.tiny import make_tiny_model

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")


def hf_tensors(folder) -> dict:
    """name -> torch tensor of every safetensors file of an HF folder."""
    from safetensors.torch import load_file

    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        out.update(load_file(path))
    return out


def convert(*args):
    assert main(["convert-weight", "--model", "llama", *map(str, args)]) == 0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("hf") / "tiny", seed=3)


@pytest.fixture(scope="module")
def tiny_ckpt(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("ms") / "tiny.ckpt"
    convert("--input_path", tiny, "--output_path", out)
    return out


def test_sharded_safetensors_become_mindformers_names_with_exact_values(tiny, tiny_ckpt):
    source = hf_tensors(tiny)
    loaded = ms.load_checkpoint(str(tiny_ckpt))
    assert set(loaded) == {hf_to_ms(name) for name in source}
    for name, t in source.items():
        param = loaded[hf_to_ms(name)]
        assert param.dtype == ms.float32
        assert tuple(param.shape) == tuple(t.shape)
        assert np.array_equal(param.asnumpy(), t.numpy()), name
    assert "model.layers.1.feed_forward.w2.weight" in loaded  # down_proj -> w2
    assert loaded["model.layers.1.attention.wk.weight"].shape == (32, 64)  # 2 kv heads of 16


def test_checkpoint_loads_into_the_mindspore_llama_with_nothing_missing(tiny, tiny_ckpt):
    models = pytest.importorskip("mindsft.models.llama")
    from mindsft.models.config import LlamaConfig

    net = models.LlamaForCausalLM(LlamaConfig.from_hf(tiny / "config.json"))
    not_loaded, unused = ms.load_param_into_net(net, ms.load_checkpoint(str(tiny_ckpt)))
    assert not not_loaded and not unused


@pytest.mark.parametrize("zip_format", [True, False])
def test_bin_folder_gives_the_same_checkpoint_as_safetensors(tiny, tiny_ckpt, tmp_path, zip_format):
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("config.json", "tokenizer.model"):
        shutil.copy(tiny / name, folder / name)
    state = hf_tensors(tiny)
    if zip_format:  # two shards and pytorch_model.bin.index.json, as transformers writes
        names = sorted(state)
        shards = {
            "pytorch_model-00001-of-00002.bin": names[:9],
            "pytorch_model-00002-of-00002.bin": names[9:],
        }
        for file, keys in shards.items():
            torch.save({k: state[k] for k in keys}, folder / file)
        weight_map = {k: file for file, keys in shards.items() for k in keys}
        index = {"metadata": {}, "weight_map": weight_map}
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    else:  # the pre-zip format, which cannot be memory-mapped, with a rotary buffer to skip
        state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
        torch.save(state, folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    convert("--input_path", folder, "--output_path", tmp_path / "bin.ckpt")
    got = dict(iter_ckpt(tmp_path / "bin.ckpt"))
    want = dict(iter_ckpt(tiny_ckpt))
    assert set(got) == set(want)
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_single_unindexed_safetensors_file_is_read(tiny, tiny_ckpt, tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "single"
    folder.mkdir()
    shutil.copy(tiny / "config.json", folder / "config.json")
    save_file(hf_tensors(tiny), folder / "model.safetensors", metadata={"format": "pt"})
    convert("--input_path", folder, "--output_path", tmp_path / "single.ckpt")
    got, want = dict(iter_ckpt(tmp_path / "single.ckpt")), dict(iter_ckpt(tiny_ckpt))
    assert got.keys() == want.keys()
    assert all(np.array_equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize(
    "word,ms_type,torch_type", [("bf16", "bfloat16", "bfloat16"), ("fp16", "float16", "float16")]
)
def test_dtype_converts_like_torch(tiny, tmp_path, word, ms_type, torch_type):
    out = tmp_path / f"{word}.ckpt"
    convert("--input_path", tiny, "--output_path", out, "--dtype", word)
    loaded = ms.load_checkpoint(str(out))
    for name, t in hf_tensors(tiny).items():
        param = loaded[hf_to_ms(name)]
        assert param.dtype == getattr(ms, ms_type)
        want = t.to(getattr(torch, torch_type)).float().numpy()
        assert np.array_equal(param.float().asnumpy(), want), name
    assert json.loads((tmp_path / f"{word}.ckpt.config.json").read_text())["torch_dtype"] == ms_type


def test_round_trip_hf_ckpt_hf_is_bit_identical_in_fp32(tiny, tiny_ckpt, tmp_path):
    back = tmp_path / "back"
    convert("--reversed", "--input_path", tiny_ckpt, "--output_path", back)
    source, again = hf_tensors(tiny), hf_tensors(back)
    assert source.keys() == again.keys()
    for name, t in source.items():
        assert again[name].dtype == t.dtype
        assert again[name].numpy().tobytes() == t.numpy().tobytes(), name
    assert json.loads((back / "config.json").read_text()) == json.loads(
        (tiny / "config.json").read_text()
    )
    index = json.loads((back / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(source)


def test_reversed_folder_loads_in_transformers_with_the_same_logits(tiny, tiny_ckpt, tmp_path):
    transformers = pytest.importorskip("transformers")
    back = tmp_path / "back"
    convert("--reversed", "--input_path", tiny_ckpt, "--output_path", back, "--config", tiny)
    assert (back / "tokenizer.model").read_bytes() == (tiny / "tokenizer.model").read_bytes()
    ids = torch.tensor([[1, 17, 250, 9, 301, 2]])
    a = transformers.LlamaForCausalLM.from_pretrained(tiny)(ids).logits
    b = transformers.LlamaForCausalLM.from_pretrained(back)(ids).logits
    assert torch.equal(a, b)


def test_tied_embeddings_have_no_lm_head_and_round_trip(tmp_path):
    transformers = pytest.importorskip("transformers")
    tied = make_tiny_model(tmp_path / "tied", tie_word_embeddings=True, num_kv_heads=4)
    convert("--input_path", tied, "--output_path", tmp_path / "tied.ckpt")
    names = {t.name for t in scan_ckpt(tmp_path / "tied.ckpt")}
    assert "lm_head.weight" not in names and "model.tok_embeddings.embedding_weight" in names
    convert(
        "--reversed", "--input_path", tmp_path / "tied.ckpt", "--output_path", tmp_path / "back"
    )
    model = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "back")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_reversed_takes_a_mindformers_yaml_config(tiny, tiny_ckpt, tmp_path):
    pytest.importorskip("mindsft.models.config")
    cfg = json.loads((tiny / "config.json").read_text())
    model_config = {
        "type": "LlamaConfig",
        "hidden_size": cfg["hidden_size"],
        "num_layers": cfg["num_hidden_layers"],
        "num_heads": cfg["num_attention_heads"],
        "n_kv_heads": cfg["num_key_value_heads"],
        "vocab_size": cfg["vocab_size"],
        "intermediate_size": cfg["intermediate_size"],
        "seq_length": 128,
        "rms_norm_eps": 1.0e-5,
    }
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"model": {"model_config": model_config}}))
    convert(
        "--reversed",
        "--input_path",
        tiny_ckpt,
        "--output_path",
        tmp_path / "back",
        "--config",
        path,
    )
    source, again = hf_tensors(tiny), hf_tensors(tmp_path / "back")
    assert all(torch.equal(source[k], again[k]) for k in source)


def test_reversed_leaves_out_training_state_and_keeps_bf16(tiny, tmp_path):
    ckpt = tmp_path / "trained.ckpt"
    with CkptWriter(ckpt) as w:
        for name, t in hf_tensors(tiny).items():
            w.write(hf_to_ms(name), t.numpy(), dtype="BF16")
            w.write("adam_m." + hf_to_ms(name), np.zeros(t.shape, np.float32))
        w.write("global_step", np.array([7], np.int32))
    convert("--reversed", "--input_path", ckpt, "--output_path", tmp_path / "hf", "--config", tiny)
    again = hf_tensors(tmp_path / "hf")
    assert len(again) == 21 and all(t.dtype == torch.bfloat16 for t in again.values())
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    emb = hf_tensors(tiny)["model.embed_tokens.weight"].to(torch.bfloat16)
    assert torch.equal(again["model.embed_tokens.weight"], emb)
    header = read_header(next((tmp_path / "hf").glob("*.safetensors")))
    assert {t.dtype for t in header} == {"BF16"}

"""Bad input to `mindsft convert-weight`: one line naming the file and what is
wrong, exit status 2, and nothing left at the output path."""

import json
import shutil
import struct

import numpy as np
import pytest
from mindsft.cli import main
from mindsft.convert.ckpt import CkptWriter
from mindsft.tiny import make_tiny_model


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("hf") / "tiny", seed=0)


@pytest.fixture
def model(pristine, tmp_path):
    """A fresh copy of the tiny model to damage."""
    return shutil.copytree(pristine, tmp_path / "model")


def fails(capsys, tmp_path, *args, output="out.ckpt"):
    """Run convert-weight expecting failure; returns its one error line."""
    out = tmp_path / "out" / output
    out.parent.mkdir(exist_ok=True)
    rc = main(["convert-weight", "--model", "llama", *map(str, args), "--output_path", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1, err
    assert list(out.parent.iterdir()) == []  # no output, no temporary left behind
    return err[0]


def edit_config(model, **changes):
    config = json.loads((model / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    (model / "config.json").write_text(json.dumps(config))


def test_folder_without_weights(model, tmp_path, capsys):
    for p in model.glob("model*"):
        p.unlink()
    line = fails(capsys, tmp_path, "--input_path", model)
    assert "neither *.safetensors nor *.bin" in line and str(model) in line


def test_truncated_safetensors_shard(model, tmp_path, capsys):
    shard = model / "model-00002-of-00003.safetensors"
    shard.write_bytes(shard.read_bytes()[:-1000])
    line = fails(capsys, tmp_path, "--input_path", model)
    assert shard.name in line and "truncated" in line


def test_corrupt_safetensors_header(model, tmp_path, capsys):
    shard = model / "model-00001-of-00003.safetensors"
    data = bytearray(shard.read_bytes())
    data[8:40] = b"\xff" * 32
    shard.write_bytes(bytes(data))
    assert "corrupt safetensors header" in fails(capsys, tmp_path, "--input_path", model)
    shard.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    assert "corrupt or truncated safetensors header" in fails(
        capsys, tmp_path, "--input_path", model
    )


def test_config_missing_a_field(model, tmp_path, capsys):
    edit_config(model, intermediate_size=None)
    line = fails(capsys, tmp_path, "--input_path", model)
    assert "config.json" in line and "'intermediate_size' is missing" in line


def test_dtype_outside_the_list(model, tmp_path, capsys):
    line = fails(capsys, tmp_path, "--input_path", model, "--dtype", "fp8")
    assert "--dtype 'fp8' is not one of fp32, fp16, bf16" in line


def test_vocab_size_differs_from_the_tokenizer(model, tmp_path, capsys):
    edit_config(model, vocab_size=640)
    line = fails(capsys, tmp_path, "--input_path", model)
    assert "vocab_size 640 differs from the 512 pieces" in line and "tokenizer.model" in line


def test_tensor_shape_that_does_not_fit_the_config(model, tmp_path, capsys):
    (model / "tokenizer.model").unlink()
    edit_config(model, intermediate_size=200)
    line = fails(capsys, tmp_path, "--input_path", model)
    assert "model.layers.0.mlp.gate_proj.weight" in line
    assert "shape [176, 64]" in line and "expects [200, 64]" in line


def test_unknown_tensor_name(model, tmp_path, capsys):
    from safetensors.numpy import save_file

    save_file(
        {"model.layers.0.self_attn.qkv_proj.weight": np.zeros((4, 4), np.float32)},
        model / "model-00004-of-00003.safetensors",
    )
    index = json.loads((model / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.0.self_attn.qkv_proj.weight"] = (
        "model-00004-of-00003.safetensors"
    )
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    line = fails(capsys, tmp_path, "--input_path", model)
    assert "model-00004-of-00003.safetensors" in line and "qkv_proj" in line


def test_layers_beyond_or_missing_from_the_config(model, tmp_path, capsys):
    edit_config(model, num_hidden_layers=1)
    line = fails(capsys, tmp_path, "--input_path", model)
    assert "model.layers.1." in line and "does not belong" in line
    edit_config(model, num_hidden_layers=3)
    line = fails(capsys, tmp_path, "--input_path", model)
    assert "'model.layers.2.self_attn.q_proj.weight' is missing" in line


def test_index_naming_a_missing_shard(model, tmp_path, capsys):
    (model / "model-00003-of-00003.safetensors").unlink()
    assert "model-00003-of-00003.safetensors, which is not in the folder" in fails(
        capsys, tmp_path, "--input_path", model
    )


def test_corrupt_bin_file(model, tmp_path, capsys):
    for p in model.glob("model*"):
        p.unlink()
    (model / "pytorch_model.bin").write_bytes(b"\x80\x02 definitely not torch")
    line = fails(capsys, tmp_path, "--input_path", model)
    assert "pytorch_model.bin: cannot read PyTorch weights" in line


def test_reversed_lora_checkpoint_asks_to_merge_first(tmp_path, capsys, pristine):
    ckpt = tmp_path / "lora.ckpt"
    with CkptWriter(ckpt) as w:
        w.write("model.layers.0.attention.wq.mindpet_delta_lora_a", np.zeros((8, 64), np.float32))
    line = fails(
        capsys, tmp_path, "--reversed", "--input_path", ckpt, "--config", pristine, output="hf"
    )
    assert "mindpet_delta_lora_a" in line and "merge" in line


def test_reversed_without_config_or_sidecar(tmp_path, capsys):
    ckpt = tmp_path / "bare.ckpt"
    with CkptWriter(ckpt) as w:
        w.write("model.norm_out.weight", np.ones(64, np.float32))
    line = fails(capsys, tmp_path, "--reversed", "--input_path", ckpt, output="hf")
    assert "--reversed needs --config" in line


def test_reversed_checkpoint_that_does_not_fit_the_config(tmp_path, capsys, pristine):
    ckpt = tmp_path / "small.ckpt"
    with CkptWriter(ckpt) as w:
        w.write("model.norm_out.weight", np.ones(32, np.float32))
    line = fails(
        capsys, tmp_path, "--reversed", "--input_path", ckpt, "--config", pristine, output="hf"
    )
    assert "'model.norm.weight' has shape [32]" in line and "expects [64]" in line

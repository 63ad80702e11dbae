"""The MindSpore checkpoint format, written and read one tensor at a time,
checked against MindSpore's own load_checkpoint / save_checkpoint."""

import numpy as np
import pytest
from mindsft.convert import ckpt as ckpt_mod
from mindsft.convert.ckpt import CkptWriter, iter_ckpt, scan_ckpt
from mindsft.convert.raw import f32_to_bf16_bits
from mindsft.errors import MindsftError

ms = pytest.importorskip("mindspore")
torch = pytest.importorskip("torch")


def arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "model.tok_embeddings.embedding_weight": rng.standard_normal((37, 11)).astype(np.float32),
        "model.norm_out.weight": rng.standard_normal(11).astype(np.float16),
        "step": np.array([5], np.int64),
    }


def test_written_checkpoint_loads_in_mindspore_with_exact_names_dtypes_values(tmp_path):
    path = tmp_path / "a.ckpt"
    data = arrays()
    with CkptWriter(path) as w:
        for name, a in data.items():
            w.write(name, a)
        w.write("bf16", data["model.tok_embeddings.embedding_weight"], dtype="BF16")
    loaded = ms.load_checkpoint(str(path))
    assert list(loaded) == [*data, "bf16"]
    for name, a in data.items():
        assert loaded[name].asnumpy().dtype == a.dtype
        assert np.array_equal(loaded[name].asnumpy(), a)
    assert loaded["bf16"].dtype == ms.bfloat16
    want = torch.from_numpy(data["model.tok_embeddings.embedding_weight"]).bfloat16().float()
    assert np.array_equal(loaded["bf16"].float().asnumpy(), want.numpy())


def test_tensor_above_the_slice_size_is_split_into_records_mindspore_joins(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt_mod, "SLICE_BYTES", 400)
    monkeypatch.setattr(ckpt_mod.raw, "CHUNK_BYTES", 96)
    path = tmp_path / "sliced.ckpt"
    big = np.arange(37 * 11, dtype=np.float32).reshape(37, 11)
    with CkptWriter(path) as w:
        w.write("big", big)
        w.write("small", big[:2])
    entries = scan_ckpt(path)
    assert [len(e.parts) for e in entries] == [5, 1]  # 1628 bytes in 400-byte records
    assert np.array_equal(ms.load_checkpoint(str(path))["big"].asnumpy(), big)
    assert np.array_equal(dict(iter_ckpt(path))["big"], big)


def test_reads_what_mindspore_save_checkpoint_writes_with_crc(tmp_path):
    path = tmp_path / "ms.ckpt"
    data = arrays(1)
    params = [{"name": n, "data": ms.Tensor(a)} for n, a in data.items()]
    params.append({"name": "bf", "data": ms.Tensor(data["model.norm_out.weight"], ms.bfloat16)})
    ms.save_checkpoint(params, str(path), crc_check=True)
    got = dict(iter_ckpt(path))
    assert list(got) == [*data, "bf"]
    for name, a in data.items():
        assert got[name].dtype == a.dtype and np.array_equal(got[name], a)
    assert got["bf"].dtype.name == "bfloat16"
    want = torch.from_numpy(data["model.norm_out.weight"]).bfloat16().float().numpy()
    assert np.array_equal(got["bf"].astype(np.float32), want)


def test_arrays_read_by_iter_ckpt_write_back_unchanged_bf16_included(tmp_path):
    a = arrays(2)["model.tok_embeddings.embedding_weight"]
    with CkptWriter(tmp_path / "in.ckpt") as w:
        w.write("w", a, dtype="BF16")
        w.write("v", a)
    read = dict(iter_ckpt(tmp_path / "in.ckpt"))
    with CkptWriter(tmp_path / "out.ckpt") as w:  # what a merge does: read, update, write
        for name, array in read.items():
            w.write(name, array)
        w.write("w_merged", read["w"].astype(np.float32) + read["v"], dtype="BF16")
    assert (tmp_path / "out.ckpt").read_bytes().startswith((tmp_path / "in.ckpt").read_bytes())
    loaded = ms.load_checkpoint(str(tmp_path / "out.ckpt"))
    assert loaded["w"].dtype == ms.bfloat16 and loaded["w_merged"].dtype == ms.bfloat16
    want = torch.from_numpy(read["w"].astype(np.float32) + a).bfloat16().float().numpy()
    assert np.array_equal(loaded["w_merged"].float().asnumpy(), want)


def test_bf16_rounding_matches_torch_including_ties_nan_and_inf():
    x = np.array(
        [1.0, 1.00390625, 1.01171875, -2.5e-39, 3.4e38, np.inf, -np.inf, np.nan, 0.1, -0.0],
        np.float32,
    )
    x = np.concatenate([x, np.random.default_rng(0).standard_normal(1000).astype(np.float32)])
    want = torch.from_numpy(x).bfloat16().view(torch.int16).numpy().view(np.uint16)
    got = f32_to_bf16_bits(x)
    finite = ~np.isnan(x)
    assert np.array_equal(got[finite], want[finite])
    assert np.isnan((got[~finite].astype(np.uint32) << 16).view(np.float32)).all()


def test_failed_write_leaves_nothing_and_duplicate_names_are_refused(tmp_path):
    path = tmp_path / "x.ckpt"
    with pytest.raises(MindsftError, match="written twice"), CkptWriter(path) as w:
        w.write("a", np.zeros(3, np.float32))
        w.write("a", np.zeros(3, np.float32))
    with pytest.raises(MindsftError, match="needs 12 bytes, got 8"), CkptWriter(path) as w:
        w.write_raw("a", "F32", (3,), [b"\0" * 8])
    assert list(tmp_path.iterdir()) == []


def test_truncated_or_foreign_files_are_reported_by_name(tmp_path):
    path = tmp_path / "t.ckpt"
    with CkptWriter(path) as w:
        w.write("a", np.zeros(100, np.float32))
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(MindsftError, match="t.ckpt: truncated"):
        scan_ckpt(path)
    path.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(MindsftError, match="not a MindSpore checkpoint"):
        scan_ckpt(path)


def test_file_to_file_copies_split_across_records_round_trip(tmp_path, monkeypatch):
    from mindsft.convert.llama import convert_hf_to_ms, convert_ms_to_hf
    from mindsft.tiny import make_tiny_model

    monkeypatch.setattr(ckpt_mod, "SLICE_BYTES", 1000)
    model = make_tiny_model(tmp_path / "hf", hidden_size=32, num_layers=1, vocab_size=400)
    convert_hf_to_ms(model, tmp_path / "m.ckpt")
    assert max(len(e.parts) for e in scan_ckpt(tmp_path / "m.ckpt")) == 52  # 400 * 32 * 4 bytes
    loaded = ms.load_checkpoint(str(tmp_path / "m.ckpt"))
    emb = dict(iter_ckpt(tmp_path / "m.ckpt"))["model.tok_embeddings.embedding_weight"]
    assert np.array_equal(loaded["model.tok_embeddings.embedding_weight"].asnumpy(), emb)
    with monkeypatch.context() as m:  # a filesystem without copy_file_range
        m.setattr(ckpt_mod.raw.os, "copy_file_range", _no_copy_file_range)
        convert_ms_to_hf(tmp_path / "m.ckpt", tmp_path / "back")
    from safetensors.numpy import load_file

    want = {k: v for s in model.glob("*.safetensors") for k, v in load_file(s).items()}
    got = {k: v for s in (tmp_path / "back").glob("*.safetensors") for k, v in load_file(s).items()}
    assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)


def _no_copy_file_range(*args):
    raise OSError(18, "Invalid cross-device link")


def test_a_temp_file_that_cannot_be_opened_ends_the_atomic_output(tmp_path, monkeypatch):
    """CkptWriter.__enter__ failing after atomic_output was entered exits it: its
    cleanup runs (the temp name, here a folder in the way, is gone) and the error
    names the checkpoint."""
    from mindsft import atomic

    in_the_way = tmp_path / ".a.ckpt.tmp-fixed"
    in_the_way.mkdir()
    monkeypatch.setattr(atomic, "temp_sibling", lambda path: in_the_way)
    monkeypatch.setattr(atomic, "check_writable", lambda path, kind=None: None)
    with pytest.raises(MindsftError, match=r"a\.ckpt: cannot write \(Is a directory\)"):
        with CkptWriter(tmp_path / "a.ckpt"):
            pass
    assert list(tmp_path.iterdir()) == []

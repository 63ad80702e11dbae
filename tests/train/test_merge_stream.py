"""merge-lora streams: the same bytes as merging whole tensors in memory (float32,
float16 and bfloat16 bases, tensors split over several records), without reading
the tensors it copies, and without importing MindSpore."""

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from mindsft.convert import ckpt
from mindsft.convert.ckpt import CkptWriter, iter_ckpt
from mindsft.pet.config import LORA_A, LORA_B, LoraConfig
from mindsft.pet.merge import merge_tensors
from mindsft.train.config import FinetuneConfig
from mindsft.train.merge import blocks, merge_lora_checkpoint, take_rank0

RANK = 4
ROOT = Path(__file__).resolve().parents[2]


def lora_config(model: dict, targets=".*wq|.*wk") -> FinetuneConfig:
    """A LoRA run's config (rank 4, alpha 8 on `targets`) for a Llama of `model`'s shape."""
    lora = LoraConfig(lora_rank=RANK, lora_alpha=8, target_modules=targets)
    return FinetuneConfig(model, lora=lora, source="test.yaml")


def llama(vocab, hidden, heads, kv, ffn) -> dict:
    """A one-layer model_config."""
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        num_layers=1,
        num_heads=heads,
        n_kv_heads=kv,
        intermediate_size=ffn,
    )


def write(path: Path, tensors: dict, dtype=None) -> Path:
    with CkptWriter(path) as out:
        for name, array in tensors.items():
            out.write(name, array, dtype if array.ndim == 2 else None)
    return path


def model(rng, shapes: dict) -> dict:
    return {name: rng.normal(0, 0.02, shape).astype(np.float32) for name, shape in shapes.items()}


def lora_for(rng, shapes: dict, targets) -> dict:
    out = {}
    for name in targets:
        prefix = name.removesuffix(".weight")
        rows, cols = shapes[name]
        out[f"{prefix}.{LORA_A}"] = rng.normal(0, 0.5, (RANK, cols)).astype(np.float32)
        out[f"{prefix}.{LORA_B}"] = rng.normal(0, 0.5, (rows, RANK)).astype(np.float32)
    out["adam_m.model.layers.0.attention.wq.mindpet_delta_lora_a"] = np.zeros(3, np.float32)
    return out


def in_memory_merge(base: Path, lora: Path, scaling: float, output: Path) -> Path:
    """The whole-tensor merge merge-lora did before streaming (pet.merge.merge_tensors)."""
    held = {n: a for n, a in iter_ckpt(lora) if n.startswith("model.")}
    with CkptWriter(output) as out:
        for name, weight in merge_tensors(iter_ckpt(base), held, scaling):
            out.write(name, weight)
    return output


SMALL = llama(vocab=40, hidden=24, heads=3, kv=1, ffn=56)
SHAPES = {
    "model.tok_embeddings.embedding_weight": (40, 24),
    "model.layers.0.attention.wq.weight": (24, 24),
    "model.layers.0.attention.wk.weight": (8, 24),
    "model.layers.0.attention_norm.weight": (24,),
    "model.layers.0.feed_forward.w2.weight": (24, 56),
    "lm_head.weight": (40, 24),
}
TARGETS = ("model.layers.0.attention.wq.weight", "model.layers.0.attention.wk.weight")


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_streamed_merge_is_byte_identical_to_the_in_memory_merge(tmp_path, monkeypatch, dtype):
    rng = np.random.default_rng(0)
    monkeypatch.setattr(ckpt, "SLICE_BYTES", 100)  # every matrix spans several records
    base = write(tmp_path / "base.ckpt", model(rng, SHAPES), dtype)
    lora = write(tmp_path / "lora.ckpt", lora_for(rng, SHAPES, TARGETS))
    monkeypatch.setattr("mindsft.convert.raw.CHUNK_BYTES", 96)  # row blocks of 2 rows
    cfg = lora_config(SMALL)
    streamed = merge_lora_checkpoint(cfg, base, lora, tmp_path / "streamed.ckpt")
    reference = in_memory_merge(base, lora, cfg.lora.scaling, tmp_path / "reference.ckpt")
    assert streamed.read_bytes() == reference.read_bytes()
    assert streamed.read_bytes() != base.read_bytes()


def test_merge_never_reads_the_tensors_it_only_copies(tmp_path):
    rng = np.random.default_rng(1)
    shapes = {  # 8 MiB each but the LoRA-updated wq (256 KiB)
        "model.tok_embeddings.embedding_weight": (8192, 256),
        "model.layers.0.attention.wq.weight": (256, 256),
        "model.layers.0.feed_forward.w1.weight": (8192, 256),
        "model.layers.0.feed_forward.w3.weight": (8192, 256),
        "lm_head.weight": (8192, 256),
    }
    base = write(tmp_path / "base.ckpt", model(rng, shapes))
    wq = "model.layers.0.attention.wq.weight"
    lora = write(tmp_path / "lora.ckpt", lora_for(rng, shapes, [wq]))
    cfg = lora_config(llama(vocab=8192, hidden=256, heads=4, kv=4, ffn=8192), targets=".*wq")
    tracemalloc.start()
    try:
        merge_lora_checkpoint(cfg, base, lora, tmp_path / "merged.ckpt")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # less than half of one copied tensor
    merged, original = dict(iter_ckpt(tmp_path / "merged.ckpt")), dict(iter_ckpt(base))
    w1 = "model.layers.0.feed_forward.w1.weight"
    np.testing.assert_array_equal(merged[w1], original[w1])
    assert not np.array_equal(merged[wq], original[wq])


def test_full_run_weights_are_rank0s_bytes_compared_block_by_block(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    weights = {**model(rng, SHAPES), "adam_v.lm_head.weight": np.ones(3, np.float32)}
    files = []
    for rank in (0, 1):
        path = tmp_path / "checkpoint" / f"rank_{rank}" / f"tiny_rank_{rank}-1_2.ckpt"
        path.parent.mkdir(parents=True)
        files.append(write(path, weights, "F16"))
    monkeypatch.setattr("mindsft.convert.raw.CHUNK_BYTES", 64)
    out = take_rank0(files[0], tmp_path / "merged.ckpt")
    expected = write(
        tmp_path / "expected.ckpt", {n: a for n, a in weights.items() if n[:6] != "adam_v"}, "F16"
    )
    assert out.read_bytes() == expected.read_bytes()


def test_blocks_recut_a_stream_into_equal_blocks():
    pieces = [b"abc", b"", b"defgh", b"i"]
    assert list(blocks(pieces, 4)) == [b"abcd", b"efgh", b"i"]
    assert list(blocks([b"abcd"], 4)) == [b"abcd"]


def test_merge_lora_command_does_not_import_mindspore(tmp_path):
    rng = np.random.default_rng(3)
    base = write(tmp_path / "base.ckpt", model(rng, SHAPES))
    lora = write(tmp_path / "lora.ckpt", lora_for(rng, SHAPES, TARGETS))
    config = tmp_path / "lora.yaml"
    pet = {"pet_type": "lora", "lora_rank": RANK, "lora_alpha": 8, "target_modules": ".*wq|.*wk"}
    model_config = {**SMALL, "pet_config": pet}
    config.write_text(json.dumps({"model": {"model_config": model_config}}))
    argv = ["merge-lora", "--config", config, "--base_checkpoint", base, "--lora_checkpoint"]
    argv += [lora, "--output_path", tmp_path / "merged.ckpt"]
    code = (
        "import sys; from mindsft.cli import main; "
        f"rc = main({[str(a) for a in argv]!r}); "
        "sys.exit(rc or ('mindspore' in sys.modules and 'mindspore imported'))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "merged.ckpt").is_file()

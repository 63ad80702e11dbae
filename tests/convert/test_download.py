"""`mindsft download` against a local HF cache with the hub offline (no test
reaches the network)."""

import os
import subprocess
import sys

import pytest
from mindsft.tiny import DEMO_FILE, HELDOUT_FILE, TEXT_FILE, make_tiny_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SECRET = "hf_SECRETtokenNEVERprinted"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("hf") / "tiny", seed=0)


def cache_repo(hub, repo_id, files: dict, revision="main"):
    """Lay files out as huggingface_hub's cache does: blobs, snapshot symlinks, refs."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / revision).write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir()
    snap.mkdir(parents=True)
    for i, (name, data) in enumerate(files.items()):
        blob = repo / "blobs" / f"blob{i}"
        blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))


def download(tmp_path, hub, *args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub), HF_TOKEN=SECRET)
    cmd = [sys.executable, "-m", "mindsft.cli", "download", *args]
    return subprocess.run(
        cmd, check=False, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120
    )


def test_offline_with_an_empty_cache_says_so_in_one_line(tmp_path):
    out = tmp_path / "out"
    r = download(
        tmp_path,
        tmp_path / "hub",
        "--repo_id",
        "meta-llama/Llama-2-7b-hf",
        "--output_dir",
        str(out),
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "meta-llama/Llama-2-7b-hf@main: HF_HUB_OFFLINE is set" in lines[0]
    assert SECRET not in r.stdout + r.stderr
    assert not out.exists()


def test_cached_repo_prefers_safetensors_over_bin(tmp_path, tiny):
    files = {p.name: p.read_bytes() for p in tiny.iterdir()}
    files["pytorch_model.bin"] = b"legacy weights that must not be fetched"
    files["training_args.bin"] = b"not weights"
    cache_repo(tmp_path / "hub", "org/tiny", files)
    out = tmp_path / "resources" / "hf" / "tiny"
    r = download(tmp_path, tmp_path / "hub", "--repo_id", "org/tiny", "--output_dir", str(out))
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr
    got = sorted(p.name for p in out.iterdir())
    demo = (DEMO_FILE, HELDOUT_FILE, TEXT_FILE)  # the demo's data, not the model's files
    want = sorted(p.name for p in tiny.iterdir() if p.name not in demo)
    assert got == want
    for name in got:
        assert (out / name).read_bytes() == (tiny / name).read_bytes()
        assert not (out / name).is_symlink()


def test_bin_only_repo_gives_bin_weights_and_unknown_revision_is_clear(tmp_path, tiny):
    files = {"config.json": (tiny / "config.json").read_bytes(), "pytorch_model.bin": b"weights"}
    cache_repo(tmp_path / "hub", "org/old", files)
    out = tmp_path / "old"
    r = download(tmp_path, tmp_path / "hub", "--repo_id", "org/old", "--output_dir", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "pytorch_model.bin"]
    r = download(
        tmp_path,
        tmp_path / "hub",
        "--repo_id",
        "org/old",
        "--revision",
        "v2",
        "--output_dir",
        str(tmp_path / "v2"),
    )
    assert r.returncode == 2 and "org/old@v2: HF_HUB_OFFLINE is set" in r.stderr
    assert not (tmp_path / "v2").exists()

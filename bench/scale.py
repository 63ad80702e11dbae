"""The streaming weight stages at Llama-2-7B size: seconds and peak RSS of
`convert-weight`, `merge-lora` and `convert-weight --reversed`.

    .venv/bin/python bench/scale.py [--workdir DIR] [--keep]

Writes a Llama-2-7B-shaped HF folder (config.json of MindFormers'
finetune_llama2_7b.yaml, random float16 values, 2 GiB safetensors shards with
an index, the real Llama 2 tokenizer from ../shared/fixtures when present) and
a rank-16 LoRA on wq, wk, wv and wo under MindFormers' names (float32, as a
training checkpoint holds them), then runs, each in its own process:

    convert-weight --dtype fp16           HF folder -> base.ckpt
    merge-lora                            base.ckpt + LoRA -> merged.ckpt
    convert-weight --reversed             merged.ckpt -> HF folder

and prints wall seconds and the stage's peak RSS (its rusage from wait4).
Inputs no later stage needs are deleted as it goes, so the disk holds at most
two copies of the model (about 27 GB): the free space is checked first. The
input files' cached pages are dropped before each stage (cold-ish reads).
Everything is removed at the end, on error and on Ctrl-C, unless --keep.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/convert.py's rules: cold-ish reads, and a child's own peak RSS through a small
# wrapper process (a child forked from this one would report this process's RSS)
from convert import WRAPPER, drop_cache  # noqa: E402

YAML_7B = ROOT.parent / "shared" / "fixtures" / "mindformers_configs" / "finetune_llama2_7b.yaml"
LORA_YAML = ROOT / "config" / "finetune" / "lora_llama2_7b.yaml"
TOKENIZER = ROOT.parent / "shared" / "fixtures" / "llama2_tokenizer.model"
SHARD_BYTES = 2 * 1024**3
LORA_RANK = 16
LORA_TARGETS = ("wq", "wk", "wv", "wo")
GB = 1e9


class RandomTensor:
    """A float16 tensor of random values for `write_sharded`, made chunk by chunk
    from a small pool of random blocks (never whole in memory)."""

    def __init__(self, name, shape, pool, index):
        self.name, self.shape, self.dtype = name, tuple(shape), "F16"
        self.pool, self.index = pool, index

    def chunks(self, size=None):
        left = int(np.prod(self.shape)) * 2
        k = self.index
        while left:
            block = self.pool[k % len(self.pool)]
            piece = memoryview(block).cast("B")[:left]
            left -= len(piece)
            k += 1
            yield piece


def hf_config() -> dict:
    """Llama-2-7B's HF config.json, from MindFormers' finetune YAML."""
    from mindsft.models.config import load_config

    return dict(load_config(YAML_7B).to_hf_dict(), torch_dtype="float16")


def model_bytes(config: dict) -> int:
    from mindsft.convert.llama import expected_shapes

    return sum(int(np.prod(s)) * 2 for s in expected_shapes(config).values())


def write_hf_folder(folder: Path, config: dict, seed: int = 0) -> None:
    from mindsft.convert import raw, safetensors_io
    from mindsft.convert.llama import expected_shapes

    rng = np.random.default_rng(seed)
    elements = raw.CHUNK_BYTES // 2
    pool = [rng.normal(0.0, 0.02, elements).astype(np.float16) for _ in range(7)]
    tensors = [
        RandomTensor(name, shape, pool, i)
        for i, (name, shape) in enumerate(expected_shapes(config).items())
    ]
    folder.mkdir(parents=True)
    safetensors_io.write_sharded(folder, tensors, SHARD_BYTES)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if TOKENIZER.is_file():
        shutil.copyfile(TOKENIZER, folder / "tokenizer.model")


def write_lora(path: Path, config: dict, seed: int = 1) -> None:
    """A rank-16 LoRA on wq/wk/wv/wo of every layer, MindFormers' names, float32."""
    from mindsft.convert.ckpt import CkptWriter
    from mindsft.pet.config import LORA_A, LORA_B

    rng = np.random.default_rng(seed)
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv = (config.get("num_key_value_heads") or heads) * (hidden // heads)
    outs = {"wq": hidden, "wk": kv, "wv": kv, "wo": hidden}
    with CkptWriter(path) as out:
        for layer in range(config["num_hidden_layers"]):
            for target in LORA_TARGETS:
                prefix = f"model.layers.{layer}.attention.{target}"
                a = rng.uniform(-1.0, 1.0, (LORA_RANK, hidden)) / np.sqrt(hidden)
                b = rng.normal(0.0, 1e-3, (outs[target], LORA_RANK))
                out.write(f"{prefix}.{LORA_A}", a.astype(np.float32))
                out.write(f"{prefix}.{LORA_B}", b.astype(np.float32))


class Stages:
    """Runs `mindsft` stages one at a time; stops a running one on interruption."""

    def __init__(self):
        self.child = None
        self.results = []

    def run(self, name: str, args: list, inputs: list) -> dict:
        drop_cache([p for p in inputs if p.is_file()])
        cmd = [sys.executable, "-m", "mindsft.cli", *map(str, args)]
        self.child = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # stop() ends the stage with its wrapper
        )
        out, err = self.child.communicate()
        self.child = None
        result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"rc": None}
        if result["rc"] != 0:
            lines = err.strip().splitlines()
            raise SystemExit(f"{name} failed: {lines[-1] if lines else result}")
        result["stage"] = name
        self.results.append(result)
        print(
            f"{name}: {result['wall_s']:.1f} s, peak RSS {result['peak_rss'] / 1e6:,.0f} MB",
            flush=True,
        )
        return result

    def stop(self) -> None:
        if self.child is not None and self.child.poll() is None:
            os.killpg(self.child.pid, signal.SIGKILL)
            self.child.wait()


def run_all(work: Path, stages: Stages) -> None:
    config = hf_config()
    hf, base, lora = work / "hf", work / "base.ckpt", work / "lora.ckpt"
    merged, back = work / "merged.ckpt", work / "hf_reversed"
    config_json = work / "config.json"
    t = time.perf_counter()
    write_hf_folder(hf, config)
    write_lora(lora, config)
    config_json.write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote the 7B-shaped folder and the LoRA in {time.perf_counter() - t:.0f} s", flush=True)
    shards = sorted(hf.glob("*.safetensors"))
    stages.run(
        "convert-weight",
        ["convert-weight", "--model", "llama", "--input_path", hf, "--output_path", base]
        + ["--dtype", "fp16"],
        shards,
    )
    shutil.rmtree(hf)
    stages.run(
        "merge-lora",
        ["merge-lora", "--config", LORA_YAML, "--base_checkpoint", base]
        + ["--lora_checkpoint", lora, "--output_path", merged],
        [base, lora],
    )
    base.unlink()
    stages.run(
        "convert-weight --reversed",
        ["convert-weight", "--model", "llama", "--reversed", "--input_path", merged]
        + ["--output_path", back, "--config", config_json],
        [merged],
    )


def check_disk(work: Path, need: int) -> None:
    free = shutil.disk_usage(work).free
    if free < need:
        raise SystemExit(
            f"bench/scale.py: {work} has {free / GB:.1f} GB free, needs {need / GB:.1f} GB "
            "(two copies of a 7B float16 model); use --workdir on a larger disk"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    need = int(2 * model_bytes(hf_config()) * 1.02) + 10**9
    check_disk(args.workdir, need)
    work = Path(tempfile.mkdtemp(prefix="mindsft-scale-", dir=args.workdir))
    stages = Stages()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"cpus {os.cpu_count()}, load average {load}; files in {work}", flush=True)
    try:
        run_all(work, stages)
    finally:
        stages.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("| stage | wall time | peak RSS |\n|---|---|---|")
    for r in stages.results:
        print(f"| `{r['stage']}` | {r['wall_s']:.0f} s | {r['peak_rss'] / 1e6:,.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

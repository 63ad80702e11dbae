"""Peak memory and time of weight conversion on a model of a few hundred MB.

Makes a model with `mindsft make-tiny-model` (default: hidden 1024, 8 layers,
vocab 32000, 200 MB shards, about 670 MB), then measures, each in a fresh child
process, the peak RSS (getrusage of the child) and wall time of: the bare
interpreter with the converter imported, HF -> ckpt in fp32 and bf16 through
the Python API, the same through the `mindsft convert-weight` command, and
ckpt -> HF. Timings are compared with reading the input files once; the page
cache is dropped for the inputs (posix_fadvise DONTNEED) before each timed run,
so reads are cold-ish for all of them.

    python bench/convert.py [--workdir DIR] [--keep]

Goals (issue 3): peak RSS < largest shard + 30%; time < 2x reading once.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# run as a child: runs argv[1:] as its own child and reports that child's peak RSS
WRAPPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": rc, "wall_s": wall, "peak_rss": peak}))
"""
MB = 1e6
CHUNK = 16 * 1024 * 1024


def drop_cache(paths) -> None:
    """Ask the kernel to forget the files' cached pages, so the next read is cold-ish."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def measure(cmd, inputs) -> dict:
    drop_cache(inputs)
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, *map(str, cmd)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}")
    return result


def read_once(paths) -> float:
    drop_cache(paths)
    t = time.perf_counter()
    buf = bytearray(CHUNK)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.perf_counter() - t


def copy_once(paths, folder: Path) -> float:
    """Read and write the same bytes once (shutil's in-kernel copy): the floor
    for any converter, which must both read and write the model."""
    drop_cache(paths)
    folder.mkdir(exist_ok=True)
    t = time.perf_counter()
    for p in paths:
        shutil.copyfile(p, folder / p.name)
    wall = time.perf_counter() - t
    shutil.rmtree(folder)
    return wall


def python_call(code: str) -> list:
    return [sys.executable, "-c", code]


def report(n_shards, total, largest, t_read, t_copy, results) -> None:
    load = os.getloadavg()
    base = results["import only (baseline)"]["wall_s"]
    print(f"model: {n_shards} shards, {total / MB:.0f} MB, largest shard {largest / MB:.0f} MB")
    print(f"read the shards once (cold-ish): {t_read:.2f} s ({total / MB / t_read:.0f} MB/s)")
    print(f"copy the shards once (read + write, in-kernel): {t_copy:.2f} s")
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print("work s = wall s less the baseline's interpreter start and imports")
    head = ("run", "peak RSS MB", "/largest", "/model", "wall s", "work s", "/read", "/copy")
    print("{:30} {:>11} {:>8} {:>6} {:>6} {:>6} {:>5} {:>5}".format(*head))
    for name, r in results.items():
        rss, wall = r["peak_rss"], r["wall_s"]
        print(
            f"{name:30} {rss / MB:11.0f} {rss / largest:8.2f} {rss / total:6.2f} {wall:6.2f} "
            f"{wall - base:6.2f} {wall / t_read:5.2f} {wall / t_copy:5.2f}"
        )
    fp32 = results["HF -> ckpt fp32, API"]
    rss_ok = fp32["peak_rss"] < 1.3 * largest
    time_ok = fp32["wall_s"] < 2 * t_read
    print(
        f"goals, HF -> ckpt fp32: peak RSS < largest shard + 30%: {'met' if rss_ok else 'MISSED'}; "
        f"wall time < 2x reading once: {'met' if time_ok else 'MISSED'}"
    )
    summary = {"total_bytes": total, "largest_shard_bytes": largest, "read_once_s": t_read}
    print(json.dumps({**summary, "copy_once_s": t_copy, "load": load, "runs": results}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="default: a temporary folder")
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    ap.add_argument("--hidden_size", default="1024")
    ap.add_argument("--num_layers", default="8")
    ap.add_argument("--intermediate_size", default="2816")
    ap.add_argument("--vocab_size", default="32000")
    ap.add_argument("--max_shard_size", default="200MB")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="mindsft-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    mindsft = Path(sys.executable).with_name("mindsft")
    model, ckpt = work / "model", work / "model.ckpt"
    try:
        if not model.exists():
            subprocess.run(
                [
                    mindsft,
                    "make-tiny-model",
                    "--output_dir",
                    model,
                    "--seed",
                    "0",
                    "--hidden_size",
                    a.hidden_size,
                    "--num_layers",
                    a.num_layers,
                    "--num_heads",
                    "16",
                    "--num_kv_heads",
                    "16",
                    "--intermediate_size",
                    a.intermediate_size,
                    "--vocab_size",
                    a.vocab_size,
                    "--max_shard_size",
                    a.max_shard_size,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        shards = sorted(model.glob("*.safetensors"))
        total = sum(p.stat().st_size for p in shards)
        largest = max(p.stat().st_size for p in shards)
        t_read = read_once(shards)
        t_copy = copy_once(shards, work / "copy")

        api = "from mindsft.convert.llama import {}; {}({!r}, {!r}, *{!r})"
        bf16, cli_ckpt, back = work / "bf16.ckpt", work / "cli.ckpt", work / "back"
        cli = [mindsft, "convert-weight", "--model", "llama", "--input_path", model]
        # name -> (command, its input files, its output)
        runs = {
            "import only (baseline)": (python_call("import mindsft.convert.llama"), shards, None),
            "HF -> ckpt fp32, API": (
                python_call(
                    api.format(*["convert_hf_to_ms"] * 2, str(model), str(ckpt), ("fp32",))
                ),
                shards,
                ckpt,
            ),
            "HF -> ckpt bf16, API": (
                python_call(
                    api.format(*["convert_hf_to_ms"] * 2, str(model), str(bf16), ("bf16",))
                ),
                shards,
                bf16,
            ),
            "HF -> ckpt fp32, mindsft CLI": ([*cli, "--output_path", cli_ckpt], shards, cli_ckpt),
            "ckpt -> HF fp32, API": (
                python_call(api.format(*["convert_ms_to_hf"] * 2, str(ckpt), str(back), ())),
                [ckpt],
                back,
            ),
        }
        results = {}
        for name, (cmd, inputs, output) in runs.items():
            if output is not None and output.is_dir():
                shutil.rmtree(output)
            elif output is not None:
                output.unlink(missing_ok=True)  # write a new file, not over an old one
            results[name] = measure(cmd, inputs)
        report(len(shards), total, largest, t_read, t_copy, results)
    finally:
        if not a.keep and not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Throughput and peak memory of `mindsft preprocess --dataset_type qa`.

Builds a 52,000-row conversation file from the shared alpaca fixture (converted by
`mindsft alpaca-converter`, repeated, ids renumbered), then runs the real command
(`mindsft.cli.main`) in a child process with --workers 2 and reports rows/s and the
peak RSS of that process and its worker processes together (sampled with psutil).

For the peer comparison, pass MindFormers' llama_preprocess.py (from a mindformers
checkout: mindformers/tools/dataset_preprocess/llama/; its `from conversation import
get_default_conv_template` needs FastChat's vicuna_v1.1 template beside it) and a
Python that can import mindformers; it runs on a subsample with the same flags, and
the bench prints both rates and their ratio:

    python bench/preprocess.py [--rows 52000] [--workers 2] [--seq_length 512] \\
        [--mindformers_script PATH --mindformers_python PY --mindformers_rows 2000]

Goal (issue 2): at least 20x MindFormers' rate. The input repeats 999 records, so
the tokenizer's word cache is warm after the first pass; the bench also prints the
row-building rate with new and with known words to show what that is worth.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"


MINDFORMERS_IMPORTS = (
    "import mindspore.mindrecord, mindformers.models.llama.llama_tokenizer, fastchat.conversation"
)


def make_input(workdir: Path, rows: int) -> Path:
    from mindsft.data.alpaca import convert_alpaca

    conv = workdir / "fixture_conversation.json"
    convert_alpaca(FIXTURES / "alpaca_en_demo.json", conv)
    records = json.loads(conv.read_text())
    out = [dict(records[i % len(records)], id=str(i + 1)) for i in range(rows)]
    path = workdir / f"conversation_{rows}.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=2))
    return path


def timed(cmd: list) -> dict:
    """Run cmd; wall time, CPU time of it and its descendants, and the peak of
    (its RSS + all its descendants' RSS)."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            try:
                procs = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{output}")
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak / 1e6, "output": output.strip()}


def word_cache_effect(conversation: Path, seq_length: int) -> str:
    """Rows per CPU-second of building rows in this process for the fixture's 999
    distinct records with a fresh tokenizer (every word new) and again (every word
    known): the repeated 52K input is mostly the second case, real data in between."""
    from mindsft.data.rows import qa_chunk
    from mindsft.data.tokenizer import SentencePieceTokenizer

    records = json.loads(conversation.read_text())
    tok = SentencePieceTokenizer(FIXTURES / "llama2_tokenizer.model")
    rates = []
    for _ in range(2):
        start = time.process_time()
        qa_chunk(tok, records, 0, conversation, seq_length + 1)
        rates.append(len(records) / (time.process_time() - start))
    return (
        f"rows built per CPU-second, 999 distinct records: {rates[0]:.0f} with new words, "
        f"{rates[1]:.0f} with known words"
    )


def preprocess_cmd(python, script, source, args, out) -> list:
    flags = [
        "--dataset_type",
        "qa",
        "--input_glob",
        str(source),
        "--model_file",
        str(FIXTURES / "llama2_tokenizer.model"),
    ]
    flags += ["--seq_length", str(args.seq_length), "--output_file", str(out)]
    return [python, *script, *flags]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=52000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seq_length", type=int, default=512)
    p.add_argument("--workdir", default=None, help="default: a temporary folder")
    p.add_argument("--mindformers_script", default=None, help="MindFormers' llama_preprocess.py")
    p.add_argument("--mindformers_python", default=None, help="a Python that imports mindformers")
    p.add_argument("--mindformers_rows", type=int, default=2000)
    args = p.parse_args()

    print(f"load average (1 min) at the start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        source = make_input(work, args.rows)
        ours_cmd = [
            sys.executable,
            "-c",
            "import sys; from mindsft.cli import main; sys.exit(main())",
            "preprocess",
        ]
        cmd = preprocess_cmd(ours_cmd[0], ours_cmd[1:], source, args, work / "ours.mindrecord")
        ours = timed([*cmd, "--workers", str(args.workers)])
        stats = json.loads((work / "ours.mindrecord.stats.json").read_text())
        ours_rate = stats["rows"] / ours["wall_s"]
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        print(word_cache_effect(work / "fixture_conversation.json", args.seq_length))
        print(
            f"mindsft preprocess --workers {args.workers}: {stats['rows']} rows, seq_length "
            f"{args.seq_length}, "
            f"{ours['wall_s']:.1f} s, {ours_rate:.0f} rows/s, CPU {ours['cpu_s']:.1f} s "
            f"({stats['rows'] / ours['cpu_s']:.0f} rows per CPU-second), "
            f"peak RSS {ours['peak_rss_mb']:.0f} MB (with workers)"
        )
        if not (args.mindformers_script and args.mindformers_python):
            print("MindFormers: not run (pass --mindformers_script and --mindformers_python)")
            return
        sub = make_input(work, args.mindformers_rows)
        cmd = preprocess_cmd(
            args.mindformers_python, [args.mindformers_script], sub, args, work / "mf.mindrecord"
        )
        mf = timed(cmd)
        # MindFormers' start-up (importing mindformers) is not counted against it
        startup = timed([args.mindformers_python, "-c", MINDFORMERS_IMPORTS])
        startup, startup_cpu = startup["wall_s"], startup["cpu_s"]
        mf_rate = args.mindformers_rows / (mf["wall_s"] - startup)
        mf_cpu_rate = args.mindformers_rows / (mf["cpu_s"] - startup_cpu)
        print(
            f"MindFormers llama_preprocess.py: {args.mindformers_rows} rows, {mf['wall_s']:.1f} s "
            f"less {startup:.1f} s of imports, {mf_rate:.0f} rows/s, "
            f"{mf_cpu_rate:.0f} rows per CPU-second, peak RSS {mf['peak_rss_mb']:.0f} MB"
        )
        print(f"speed-up per CPU-second: {stats['rows'] / ours['cpu_s'] / mf_cpu_rate:.1f}x")
        print(f"speed-up, end to end: {ours_rate / mf_rate:.1f}x (goal 20x)")


if __name__ == "__main__":
    main()

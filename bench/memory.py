"""The memory plan against real CPU fine-tunes: `mindsft plan`'s per-device
estimate beside the peak RSS `mindsft finetune` reaches, row by row.

    .venv/bin/python bench/memory.py [--steps 2] [--rows 256,512,1024] [--seqs 256,512]
                                     [--recompute both|off|on] [--keep DIR]

Each row is a real run (a subprocess, one at a time) on generated data: a
random-weight base checkpoint with MindFormers' names, a MindRecord of random
token rows (a quarter of each row's labels masked) and a MindFormers-shaped
YAML (`context.device_target: CPU`, so the plan uses its CPU factors). Rows:
hidden 256/512/1024 (head size 64), 4 layers, vocab 32000, batch 2, seq 256
and 512, LoRA (rank 16 on wq/wk/wv/wo, dropout 0.05, as MindFormers' YAML) and
full fine-tuning, each without and with recompute (`recompute_config.recompute`).

What is measured is the peak RSS of the training steps: the child's high-water
mark is reset (/proc/PID/clear_refs) when its loss log appears, just before the
first step is compiled and run, and read once `--steps` steps are logged; the
child is then stopped (its final checkpoint save is host I/O, not the step).
The baseline, subtracted from every row and measured in the same run, is the
same command on the same structure (layers, LoRA or full, dropout, the two
query halves) with hidden 64 and vocab 128: the interpreter, MindSpore, the
compiled train step (its size follows the layer count, not the widths) and the
runtime's fixed buffers, with next to no tensors; the plan's estimate for that
tiny model is subtracted from the row's estimate alike. The whole-run peak
(weights loading included) is printed beside it. Goal: within +-15% per row.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import yaml

VOCAB = 32000
LAYERS = 4
BATCH = 2
LORA = {
    "pet_type": "lora",
    "lora_rank": 16,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "target_modules": ".*wq|.*wk|.*wv|.*wo",
}
MB = 1e6


@dataclass(frozen=True)
class Row:
    """One fine-tune to measure."""

    hidden: int
    seq: int
    lora: bool
    vocab: int = VOCAB
    recompute: bool = False

    @property
    def name(self) -> str:
        mode = "lora" if self.lora else "full"
        return f"hidden {self.hidden} seq {self.seq} {mode}{' recompute' if self.recompute else ''}"

    def baseline(self) -> "Row":
        """The same structure with tiny widths."""
        return Row(64, 128, self.lora, vocab=128, recompute=self.recompute)


def model_config(row: Row) -> dict:
    from mindsft.models.config import mindformers_ffn_size

    heads = max(1, row.hidden // 64)
    return {
        "type": "LlamaConfig",
        "seq_length": row.seq,
        "hidden_size": row.hidden,
        "num_layers": LAYERS,
        "num_heads": heads,
        "n_kv_heads": heads,
        "vocab_size": row.vocab,
        "intermediate_size": mindformers_ffn_size(row.hidden),
        "compute_dtype": "float32",
    }


def write_checkpoint(path: Path, mc: dict, seed: int = 0) -> None:
    """Random N(0, 0.02) weights (norms 1) under MindFormers' names."""
    from mindsft.convert.ckpt import CkptWriter
    from mindsft.models.config import LlamaConfig
    from mindsft.plan.shapes import parameter_shapes

    rng = np.random.default_rng(seed)
    with CkptWriter(path) as out:
        for name, shape in parameter_shapes(LlamaConfig.from_mindformers(mc)).items():
            if len(shape) == 1:
                out.write(name, np.ones(shape, np.float32))
            else:
                out.write(name, rng.normal(0.0, 0.02, shape).astype(np.float32))


def write_mindrecord(path: Path, rows: int, seq: int, vocab: int, seed: int = 0) -> None:
    """qa rows of seq + 1 random tokens; the first quarter of each row's labels masked."""
    from mindspore.mindrecord import FileWriter

    rng = np.random.default_rng(seed)
    writer = FileWriter(str(path), shard_num=1, overwrite=True)
    column = {"type": "int32", "shape": [-1]}
    writer.add_schema({"input_ids": column, "labels": column})
    records = []
    for _ in range(rows):
        ids = rng.integers(3, vocab, size=seq + 1, dtype=np.int32)
        labels = ids.copy()
        labels[: seq // 4] = -100
        records.append({"input_ids": ids, "labels": labels})
    writer.write_raw_data(records)
    writer.commit()


def write_yaml(path: Path, row: Row, mc: dict) -> None:
    model = dict(mc, pet_config=LORA) if row.lora else mc
    raw = {
        "seed": 0,
        "runner_config": {"epochs": 1, "batch_size": BATCH, "gradient_accumulation_steps": 1},
        "optimizer": {"type": "AdamWeightDecay", "learning_rate": 1e-4, "eps": 1e-8},
        "lr_schedule": {"type": "ConstantWarmUpLR", "learning_rate": 1e-4},
        "train_dataset": {"data_loader": {"shuffle": False}, "drop_remainder": True},
        "runner_wrapper": {"use_clip_grad": True},
        "recompute_config": {"recompute": row.recompute},
        "callbacks": [
            {"type": "CheckpointMonitor", "prefix": "bench", "save_checkpoint_steps": 10**6}
        ],
        "context": {"mode": 0, "device_target": "CPU"},
        "model": {"model_config": model},
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def high_water(pid: int) -> int:
    """The process's peak RSS (VmHWM) in bytes."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def measure(work: Path, row: Row, steps: int) -> dict:
    """Run `mindsft finetune` on `row`; the peak RSS of its training steps, and of
    the whole run up to then."""
    work.mkdir(parents=True, exist_ok=True)
    mc = model_config(row)
    ckpt, data, config = work / "base.ckpt", work / "data.mindrecord", work / "finetune.yaml"
    write_checkpoint(ckpt, mc)
    write_mindrecord(data, BATCH * (steps + 1), row.seq, row.vocab)
    write_yaml(config, row, mc)
    out = work / "train"
    cmd = [sys.executable, "-m", "mindsft.cli", "finetune", "--config", str(config)]
    cmd += ["--train_dataset_dir", str(data), "--load_checkpoint", str(ckpt)]
    cmd += ["--output_dir", str(out)]
    log = out / "loss.jsonl"
    start = time.perf_counter()
    with open(work / "finetune.log", "w") as err:
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    result = {}
    try:
        while child.poll() is None:
            if "reset" not in result and log.exists():
                result["reset"] = high_water(child.pid)  # loading the weights, compiling
                with open(f"/proc/{child.pid}/clear_refs", "w") as fh:
                    fh.write("5")  # reset the high-water mark to the current RSS
            if "reset" in result and len(log.read_text().splitlines()) >= steps:
                result["steps"] = high_water(child.pid)
                break
            time.sleep(0.005)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        child.wait()
    if "steps" not in result:
        raise SystemExit(f"{row.name}: finetune failed, see {work / 'finetune.log'}")
    result["whole"] = max(result["reset"], result["steps"])
    result["wall"] = time.perf_counter() - start
    result["config"] = config
    return result


def estimate(config: Path) -> int:
    """The plan's per-device peak for the YAML, as `mindsft plan` computes it."""
    from mindsft.plan.planner import make_plan

    return make_plan(config).verdict.breakdown.total


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    free = psutil.virtual_memory().available / 2**30
    return f"cpus {os.cpu_count()}, load average {load}, available memory {free:.1f} GiB"


RECOMPUTE = {"both": (False, True), "off": (False,), "on": (True,)}


def rows_for(hiddens, seqs=(256, 512), recompute=(False, True)) -> list:
    return [
        Row(h, s, lora, recompute=r)
        for h in hiddens
        for s in seqs
        for lora in (True, False)
        for r in recompute
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="training steps measured per run")
    parser.add_argument("--rows", default="256,512,1024", help="hidden sizes to run")
    parser.add_argument("--seqs", default="256,512", help="sequence lengths to run")
    parser.add_argument("--recompute", choices=RECOMPUTE, default="both", help="rows to run")
    parser.add_argument("--keep", type=Path, help="keep the generated files here")
    args = parser.parse_args(argv)
    hiddens = [int(h) for h in args.rows.split(",")]
    seqs = [int(s) for s in args.seqs.split(",")]
    rows = rows_for(hiddens, seqs, RECOMPUTE[args.recompute])
    print(f"start: {machine()}", flush=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="mindsft-bench-memory-"))
    try:
        table = run_rows(work, rows, args.steps)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"end: {machine()}")
    print_table(table)
    worst = max(abs(r["error"]) for r in table)
    print(f"worst error {100 * worst:.1f}% (goal 15%)")
    return 0 if worst <= 0.15 else 1


def run_rows(work: Path, rows: list, steps: int) -> list:
    """Measure every row and its baseline; return the table's records."""
    baselines, table = {}, []
    for i, row in enumerate(rows):
        base = row.baseline()
        if base not in baselines:
            baselines[base] = measure(work / f"baseline-{len(baselines)}", base, steps)
            baselines[base]["estimate"] = estimate(baselines[base]["config"])
        b = baselines[base]
        got = measure(work / f"row-{i}", row, steps)
        est = estimate(got["config"]) - b["estimate"]
        measured = got["steps"] - b["steps"]
        record = dict(row=row, estimate=est, measured=measured, error=(est - measured) / measured)
        record.update(whole=got["whole"] - b["whole"], wall=got["wall"], baseline=b["steps"])
        table.append(record)
        print(
            f"{row.name}: estimate {est / MB:.0f} MB, measured {measured / MB:.0f} MB "
            f"({100 * record['error']:+.1f}%), {got['wall']:.0f} s",
            flush=True,
        )
    return table


def print_table(table: list) -> None:
    print(
        "| row | plan estimate | measured (steps peak - baseline) | error | "
        "whole run peak - baseline | baseline peak |"
    )
    print("|---|---|---|---|---|---|")
    for r in table:
        print(
            f"| {r['row'].name} | {r['estimate'] / MB:,.0f} MB | {r['measured'] / MB:,.0f} MB | "
            f"{100 * r['error']:+.1f}% | {r['whole'] / MB:,.0f} MB | {r['baseline'] / MB:,.0f} MB |"
        )


if __name__ == "__main__":
    sys.exit(main())

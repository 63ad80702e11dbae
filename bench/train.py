"""Training throughput: mindsft's trainer (MindSpore, jit train step) against HF
transformers + PEFT in torch, on the same CPU, the same small Llama and the
same batches, full-parameter and LoRA.

    .venv/bin/python bench/train.py [--steps 8] [--warmup 2] [--lora_dropout 0.05]

The two frameworks take turns step by step (the torch step runs from the
trainer's after-step hook, after a short pause so neither framework's spinning
worker threads overlap the other's step), so both see the same machine load;
each side's figure is its median step. Prints tokens/s for both and the ratio;
the last line reads `lora: mindsft_tokens_per_s=X torch_tokens_per_s=Y ratio=Z`.
Tokens are every input position of a step (batch x seq), as both sides compute them.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODEL = {
    "hidden_size": 256,
    "num_layers": 4,
    "num_heads": 8,
    "vocab_size": 32000,
    "seq_length": 512,
}
BATCH = 4
LORA = {"lora_rank": 16, "lora_alpha": 16, "target_modules": ".*wq|.*wk|.*wv|.*wo"}


def batches(rows: int, seq: int, vocab: int, seed: int = 0) -> np.ndarray:
    """Seeded random token rows of seq + 1 ids (no padding: every target counts)."""
    return np.random.default_rng(seed).integers(3, vocab, size=(rows, seq + 1), dtype=np.int32)


def mindsft_trainer(workdir: Path, ids: np.ndarray, lora_dropout, steps: int, lora: bool):
    """A set-up mindsft Trainer over `ids` (written as a MindRecord) for `steps` steps."""
    import mindspore as ms
    import yaml
    from mindsft.models.config import LlamaConfig, mindformers_ffn_size
    from mindsft.models.llama import LlamaForCausalLM
    from mindsft.train.config import load_finetune_config
    from mindsft.train.trainer import RunPaths, Trainer
    from mindspore.mindrecord import FileWriter

    data = workdir / "bench.mindrecord"
    if not data.exists():
        writer = FileWriter(str(data), shard_num=1, overwrite=True)
        schema = {"type": "int32", "shape": [-1]}
        writer.add_schema({"input_ids": schema, "labels": schema})
        writer.write_raw_data([{"input_ids": row, "labels": row} for row in ids])
        writer.commit()
    model_config = dict(MODEL, intermediate_size=mindformers_ffn_size(MODEL["hidden_size"]))
    base = workdir / "base.ckpt"
    if not base.exists():
        ms.set_seed(0)
        ms.save_checkpoint(LlamaForCausalLM(LlamaConfig.from_mindformers(model_config)), str(base))
    if lora:
        model_config["pet_config"] = {"pet_type": "lora", "lora_dropout": lora_dropout, **LORA}
    raw = {
        "seed": 0,
        "runner_config": {"epochs": 1, "batch_size": BATCH},
        "optimizer": {"type": "AdamWeightDecay", "learning_rate": 1e-4, "eps": 1e-8},
        "lr_schedule": {"type": "ConstantWarmUpLR", "learning_rate": 1e-4},
        "train_dataset": {"data_loader": {"shuffle": False}},
        "runner_wrapper": {"use_clip_grad": True},
        "callbacks": [
            {"type": "CheckpointMonitor", "prefix": "bench", "save_checkpoint_steps": 10**6}
        ],
        "model": {"model_config": model_config},
    }
    cfg_path = workdir / ("lora.yaml" if lora else "full.yaml")
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_finetune_config(cfg_path)
    cfg.train.num_samples = BATCH * steps
    out = workdir / ("out_lora" if lora else "out_full")
    trainer = Trainer(cfg, RunPaths(str(data), str(base), str(out)), say=lambda msg: None)
    trainer.setup()
    return trainer


def torch_stepper(ids: np.ndarray, lora_dropout, lora: bool):
    """HF Llama (+ PEFT LoRA) in torch; returns step(i) -> seconds for optimizer step i."""
    import torch
    from mindsft.models.config import mindformers_ffn_size
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=MODEL["vocab_size"],
        hidden_size=MODEL["hidden_size"],
        intermediate_size=mindformers_ffn_size(MODEL["hidden_size"]),
        num_hidden_layers=MODEL["num_layers"],
        num_attention_heads=MODEL["num_heads"],
        max_position_embeddings=MODEL["seq_length"],
    )
    model = LlamaForCausalLM(config)
    if lora:
        from peft import LoraConfig, get_peft_model

        peft_cfg = LoraConfig(
            r=LORA["lora_rank"],
            lora_alpha=LORA["lora_alpha"],
            lora_dropout=lora_dropout,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        )
        model = get_peft_model(model, peft_cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, eps=1e-8, weight_decay=0.0)

    def step(i: int) -> float:
        rows = torch.from_numpy(ids[i * BATCH : (i + 1) * BATCH].astype(np.int64))
        t0 = time.perf_counter()
        loss = model(input_ids=rows[:, :-1], labels=rows[:, 1:].clone()).loss  # HF shifts again
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    return step


def paired_step_seconds(workdir: Path, ids, lora_dropout, steps, warmup, lora, pause):
    """Alternate mindsft and torch optimizer steps; return each side's step times
    after the warm-up steps."""
    trainer = mindsft_trainer(workdir, ids, lora_dropout, steps + warmup, lora)
    torch_step = torch_stepper(ids, lora_dropout, lora)
    times = {"mindsft": [], "torch": []}

    def after_step(record):
        times["mindsft"].append(record["tokens"] / record["tokens_per_s"])
        time.sleep(pause)
        times["torch"].append(torch_step(record["step"] - 1))
        time.sleep(pause)

    trainer.train(after_step=after_step)
    return {side: t[warmup:] for side, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps (compilation)")
    parser.add_argument(
        "--lora_dropout", type=float, default=0.05, help="both sides (MindFormers' 0.05)"
    )
    parser.add_argument(
        "--pause", type=float, default=0.3, help="seconds idle between the two sides' steps"
    )
    args = parser.parse_args(argv)
    ids = batches(BATCH * (args.steps + args.warmup), MODEL["seq_length"], MODEL["vocab_size"])
    tokens = BATCH * MODEL["seq_length"]
    print(f"cpu cores: {os.cpu_count()}  load average: {os.getloadavg()}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("full", "lora"):
            times = paired_step_seconds(
                Path(tmp),
                ids,
                args.lora_dropout,
                args.steps,
                args.warmup,
                mode == "lora",
                args.pause,
            )
            ms_tps, th_tps = (
                tokens / float(np.median(times[side])) for side in ("mindsft", "torch")
            )
            results[mode] = (ms_tps, th_tps)
            for side in ("mindsft", "torch"):
                steps = " ".join(f"{t:.2f}" for t in times[side])
                print(f"{mode} {side} step seconds: {steps}", file=sys.stderr, flush=True)
    for mode, (ms_tps, th_tps) in results.items():
        print(
            f"{mode}: mindsft_tokens_per_s={ms_tps:.1f} torch_tokens_per_s={th_tps:.1f} "
            f"ratio={ms_tps / th_tps:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

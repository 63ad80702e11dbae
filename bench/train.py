"""Training throughput: mindsft's trainer (MindSpore, jit train step) against HF
transformers + PEFT in torch, on the same CPU, the same small Llama and the
same batches.

    .venv/bin/python bench/train.py [--steps 8] [--warmup 2] [--lora_dropout 0.05]
        [--modes full,lora,packed]

Raw throughput (`full`, `lora`): seq_length 512, batch 4 of seeded random tokens
(no padding: every target counts); tokens are every input position of a step, as
both sides compute them. Prints `MODE: mindsft_tokens_per_s=X torch_tokens_per_s=Y
ratio=Z`.

Trained tokens (`packed`): the real alpaca fixture (`mindsft alpaca-converter`, then
`mindsft preprocess` with the real Llama 2 tokenizer) at seq_length 2048, LoRA rank
16 on q, k, v, o, batch 1. Contenders:
- mindsft on the packed MindRecord (`preprocess --packing True`);
- torch + HF + PEFT padded, the way most users run it: one sample per row, padded
  to seq_length, with its attention mask (the rows of the unpacked MindRecord);
- torch + HF + PEFT packed: the packed rows, a 4D float block-diagonal causal mask
  and position_ids restarting per sample (use_cache=False), checked at start-up to
  give each sample's logits as it alone would.
A trained token is a target the loss counts. Each step, the three train the same
samples: those of one packed row (torch padded in micro-batches of 2 rows, one
optimizer step), so they count the same targets. They go over the first `--steps`
packed rows twice; the first pass compiles every shape those steps need and warms
all up (torch padded takes its first step only: it has nothing to compile), the
second is timed (`--warmup` applies to the raw comparison only). The last
line reads `packed: mindsft_trained_tokens_per_s=X torch_padded=Y torch_packed=Z
ratio_padded=R1 ratio_packed=R2`, each figure all trained tokens over all seconds of
the timed steps.

The contenders take turns step by step (the torch steps run from the trainer's
after-step hook, after a short pause so neither framework's spinning worker
threads overlap the other's step), so all see the same machine load.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
MODEL = {
    "hidden_size": 256,
    "num_layers": 4,
    "num_heads": 8,
    "vocab_size": 32000,
    "seq_length": 512,
}
BATCH = 4
PACKED_SEQ = 2048
PACKED_BATCH = 1
PADDED_MICRO = 2  # padded rows per torch forward (a step takes all the samples of a packed batch)
LORA = {"lora_rank": 16, "lora_alpha": 16, "target_modules": ".*wq|.*wk|.*wv|.*wo"}
IGNORE = -100


def batches(rows: int, seq: int, vocab: int, seed: int = 0) -> np.ndarray:
    """Seeded random token rows of seq + 1 ids (no padding: every target counts)."""
    return np.random.default_rng(seed).integers(3, vocab, size=(rows, seq + 1), dtype=np.int32)


def random_mindrecord(workdir: Path, ids: np.ndarray) -> Path:
    """`ids` as a qa MindRecord whose labels are the ids themselves."""
    from mindspore.mindrecord import FileWriter

    data = workdir / "bench.mindrecord"
    if not data.exists():
        writer = FileWriter(str(data), shard_num=1, overwrite=True)
        schema = {"type": "int32", "shape": [-1]}
        writer.add_schema({"input_ids": schema, "labels": schema})
        writer.write_raw_data([{"input_ids": row, "labels": row} for row in ids])
        writer.commit()
    return data


def alpaca_mindrecords(workdir: Path, seq: int) -> dict:
    """The shared alpaca fixture through `mindsft alpaca-converter` and `mindsft
    preprocess` (real Llama 2 tokenizer): {"padded": path, "packed": path}."""
    from mindsft.data.alpaca import convert_alpaca
    from mindsft.data.preprocess import preprocess

    conversation = workdir / "conversation.json"
    convert_alpaca(FIXTURES / "alpaca_en_demo.json", conversation)
    out = {}
    for kind in ("padded", "packed"):
        out[kind] = workdir / f"alpaca_{seq}_{kind}.mindrecord"
        tokenizer = FIXTURES / "llama2_tokenizer.model"
        preprocess("qa", str(conversation), tokenizer, seq, out[kind], packing=kind == "packed")
    return out


def mindsft_trainer(
    workdir: Path, data: Path, shape: dict, batch: int, steps: int, lora, epochs: int = 1
):
    """A set-up mindsft Trainer over the first `steps` batches of the MindRecord `data`
    (file order) for `epochs` epochs; `lora` is the LoRA dropout (None: full-parameter)."""
    import mindspore as ms
    import yaml
    from mindsft.models.config import LlamaConfig, mindformers_ffn_size
    from mindsft.models.llama import LlamaForCausalLM
    from mindsft.train.config import load_finetune_config
    from mindsft.train.trainer import RunPaths, Trainer

    model_config = dict(shape, intermediate_size=mindformers_ffn_size(shape["hidden_size"]))
    base = workdir / f"base_{shape['seq_length']}.ckpt"
    if not base.exists():
        ms.set_seed(0)
        ms.save_checkpoint(LlamaForCausalLM(LlamaConfig.from_mindformers(model_config)), str(base))
    if lora is not None:
        model_config["pet_config"] = {"pet_type": "lora", "lora_dropout": lora, **LORA}
    raw = {
        "seed": 0,
        "runner_config": {"epochs": epochs, "batch_size": batch},
        "optimizer": {"type": "AdamWeightDecay", "learning_rate": 1e-4, "eps": 1e-8},
        "lr_schedule": {"type": "ConstantWarmUpLR", "learning_rate": 1e-4},
        "train_dataset": {"data_loader": {"shuffle": False}},
        "runner_wrapper": {"use_clip_grad": True},
        "callbacks": [
            {"type": "CheckpointMonitor", "prefix": "bench", "save_checkpoint_steps": 10**6}
        ],
        "model": {"model_config": model_config},
    }
    name = f"{data.stem}_{'full' if lora is None else 'lora'}"
    cfg_path = workdir / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_finetune_config(cfg_path)
    cfg.train.num_samples = batch * steps
    out = workdir / f"out_{name}"
    trainer = Trainer(cfg, RunPaths(str(data), str(base), str(out)), say=lambda msg: None)
    trainer.setup()
    return trainer


def torch_model(shape: dict, lora):
    """HF Llama (+ PEFT LoRA when `lora` is a dropout, not None) in torch, training
    mode, with its AdamW: (model, trainable params, optimizer)."""
    import torch
    from mindsft.models.config import mindformers_ffn_size
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=shape["vocab_size"],
        hidden_size=shape["hidden_size"],
        intermediate_size=mindformers_ffn_size(shape["hidden_size"]),
        num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"],
        max_position_embeddings=shape["seq_length"],
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(config)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        peft_cfg = LoraConfig(
            r=LORA["lora_rank"],
            lora_alpha=LORA["lora_alpha"],
            lora_dropout=lora,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        )
        model = get_peft_model(model, peft_cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return model, params, torch.optim.AdamW(params, lr=1e-4, eps=1e-8, weight_decay=0.0)


def torch_step(model, params, opt, inputs: dict) -> float:
    """One optimizer step on `inputs` (model keyword arguments); its seconds."""
    import torch

    t0 = time.perf_counter()
    model(**inputs).loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def paired_step_seconds(workdir: Path, ids, lora_dropout, steps, warmup, lora, pause):
    """Raw throughput: alternate mindsft and torch optimizer steps on random rows;
    each side's step seconds after the warm-up steps."""
    import torch

    data = random_mindrecord(workdir, ids)
    dropout = lora_dropout if lora else None
    trainer = mindsft_trainer(workdir, data, MODEL, BATCH, steps + warmup, dropout)
    model, params, opt = torch_model(MODEL, dropout)
    times = {"mindsft": [], "torch": []}

    def after_step(record):
        times["mindsft"].append(record["tokens"] / record["tokens_per_s"])
        time.sleep(pause)
        i = record["step"] - 1
        rows = torch.from_numpy(ids[i * BATCH : (i + 1) * BATCH].astype(np.int64))
        inputs = {"input_ids": rows[:, :-1], "labels": rows[:, 1:].clone()}  # HF shifts again
        times["torch"].append(torch_step(model, params, opt, inputs))
        time.sleep(pause)

    trainer.train(after_step=after_step)
    return {side: t[warmup:] for side, t in times.items()}


# ---- trained tokens: packed against padded


def hf_inputs(batch: dict, pad_id: int = 0) -> tuple:
    """HF keyword arguments for a reader batch and its trained-target count: the
    targets mindsft trains (data/batch.py's shift and masks) as `shift_labels`; for
    packed rows a 4D float block-diagonal causal mask and restarting position_ids,
    for padded rows the 2D attention mask of their real tokens."""
    import torch
    from mindsft.data.batch import step_batch

    layout = step_batch(batch, pad_id, IGNORE)
    rows, seq = batch["input_ids"].shape[0], batch["input_ids"].shape[1] - 1
    flat = np.full(rows * layout.tokens.shape[1], IGNORE, np.int64)
    flat[layout.index[: layout.trained]] = layout.targets[: layout.trained]
    targets = np.full((rows, seq), IGNORE, np.int64)
    targets[:, : layout.tokens.shape[1]] = flat.reshape(rows, -1)
    tokens = torch.from_numpy(batch["input_ids"][:, :-1].astype(np.int64))
    inputs = {"input_ids": tokens, "use_cache": False}
    inputs["labels"] = inputs["shift_labels"] = torch.from_numpy(targets)
    if "actual_seq_len" in batch:
        segments, positions = packed_positions(batch["actual_seq_len"], seq)
        allowed = (segments[:, :, None] == segments[:, None, :]) & np.tri(seq, dtype=bool)
        mask = np.where(allowed, 0.0, np.finfo(np.float32).min).astype(np.float32)
        inputs["attention_mask"] = torch.from_numpy(mask[:, None])  # (B, 1, T, T)
        inputs["position_ids"] = torch.from_numpy(positions.astype(np.int64))
    else:
        inputs["attention_mask"] = (tokens != pad_id).long()
    return inputs, layout.trained


def packed_positions(ends, seq: int) -> tuple:
    """(sample numbers, positions within samples), (B, seq) each, of packed rows."""
    from mindsft.data.packing import sample_positions

    parts = [sample_positions(row_ends, seq) for row_ends in ends]
    return np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])


def check_packed_attention(model, batch: dict) -> float:
    """Max |logit difference| between HF on a packed row (hf_inputs) and HF on each of
    its samples alone; fails above 1e-4."""
    import torch

    inputs, _ = hf_inputs(batch)
    model.eval()
    with torch.no_grad():
        packed = model(**{k: v for k, v in inputs.items() if "labels" not in k}).logits[0]
        worst, start = 0.0, 0
        for end in batch["actual_seq_len"][0]:
            alone = model(input_ids=inputs["input_ids"][:, start:end], use_cache=False).logits[0]
            worst = max(worst, float((packed[start:end] - alone).abs().max()))
            start = int(end)
    model.train()
    if worst > 1e-4:
        raise SystemExit(f"HF packed attention leaks across samples: max |diff| {worst:.2e}")
    return worst


def torch_padded_step(model, params, opt, rows: list) -> tuple:
    """One optimizer step over padded reader batches (`rows`, micro-batches whose
    losses are weighted by their trained targets): (trained targets, seconds)."""
    import torch

    prepared = [hf_inputs(batch) for batch in rows]
    total = sum(trained for _, trained in prepared)
    t0 = time.perf_counter()
    for inputs, trained in prepared:
        (model(**inputs).loss * (trained / max(total, 1))).backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return total, time.perf_counter() - t0


def padded_samples(packed: dict, padded: dict, steps: int) -> list:
    """Per packed batch of the first `steps` (file order), the padded reader batches
    (micro-batches of PADDED_MICRO rows) of the same samples: packing keeps their
    order, so packed row r holds the samples after those of rows 0..r-1."""
    counts = [len(ends) for ends in packed["actual_seq_len"]]
    first = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for step in range(steps):
        rows = range(first[step * PACKED_BATCH], first[(step + 1) * PACKED_BATCH])
        micro = [list(rows[k : k + PADDED_MICRO]) for k in range(0, len(rows), PADDED_MICRO)]
        out.append([{c: padded[c][idx] for c in ("input_ids", "labels")} for idx in micro])
    return out


def packed_run(workdir: Path, lora_dropout, steps, pause) -> dict:
    """Alternate mindsft packed, torch padded and torch packed LoRA steps over the
    samples of the first `steps` packed batches, twice: the first epoch compiles
    every shape the steps need and warms both frameworks up, the second is timed.
    Returns each contender's trained tokens per second."""
    from mindsft.data.reader import MindRecordBatches, read_mindrecord

    shape = dict(MODEL, seq_length=PACKED_SEQ)
    data = alpaca_mindrecords(workdir, PACKED_SEQ)
    trainer = mindsft_trainer(
        workdir, data["packed"], shape, PACKED_BATCH, steps, lora_dropout, epochs=2
    )
    packed_rows = list(MindRecordBatches(data["packed"], PACKED_BATCH))[:steps]
    padded_rows = padded_samples(
        read_mindrecord(data["packed"]), read_mindrecord(data["padded"]), steps
    )
    peers = {kind: torch_model(shape, lora_dropout) for kind in ("padded", "packed")}
    worst = check_packed_attention(peers["packed"][0], packed_rows[0])
    print(f"HF packed row against its samples alone: max |logit diff| {worst:.1e}", flush=True)
    totals = {side: [0, 0.0] for side in ("mindsft", "padded", "packed")}

    def add(side: str, record: dict, tokens: int, seconds: float) -> None:
        if record["epoch"] == 2:
            totals[side][0] += tokens
            totals[side][1] += seconds
        print(
            f"{side} epoch {record['epoch']} step {record['step']}: {tokens} trained tokens "
            f"{seconds:.2f} s",
            file=sys.stderr,
            flush=True,
        )

    def after_step(record):
        i = (record["step"] - 1) % steps
        add("mindsft", record, record["trained_tokens"], record["tokens"] / record["tokens_per_s"])
        time.sleep(pause)
        if record["epoch"] == 2 or i == 0:  # torch compiles nothing: one padded warm-up step
            add("padded", record, *torch_padded_step(*peers["padded"], padded_rows[i]))
            time.sleep(pause)
        inputs, trained = hf_inputs(packed_rows[i])
        add("packed", record, trained, torch_step(*peers["packed"], inputs))
        time.sleep(pause)

    trainer.train(after_step=after_step)
    return {side: tokens / seconds for side, (tokens, seconds) in totals.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps (compilation)")
    parser.add_argument(
        "--lora_dropout", type=float, default=0.05, help="both sides (MindFormers' 0.05)"
    )
    parser.add_argument(
        "--pause", type=float, default=0.3, help="seconds idle between the sides' steps"
    )
    parser.add_argument("--modes", default="full,lora,packed", help="comparisons to run")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    ids = batches(BATCH * (args.steps + args.warmup), MODEL["seq_length"], MODEL["vocab_size"])
    tokens = BATCH * MODEL["seq_length"]
    print(f"cpu cores: {os.cpu_count()}  load average: {os.getloadavg()}", flush=True)
    results, packed = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for mode in [m for m in ("full", "lora") if m in modes]:
            times = paired_step_seconds(
                Path(tmp),
                ids,
                args.lora_dropout,
                args.steps,
                args.warmup,
                mode == "lora",
                args.pause,
            )
            results[mode] = tuple(tokens / float(np.median(times[s])) for s in ("mindsft", "torch"))
            for side in ("mindsft", "torch"):
                steps = " ".join(f"{t:.2f}" for t in times[side])
                print(f"{mode} {side} step seconds: {steps}", file=sys.stderr, flush=True)
        if "packed" in modes:
            packed = packed_run(Path(tmp), args.lora_dropout, args.steps, args.pause)
    print(f"load average at the end: {os.getloadavg()}")
    for mode, (ms_tps, th_tps) in results.items():
        print(
            f"{mode}: mindsft_tokens_per_s={ms_tps:.1f} torch_tokens_per_s={th_tps:.1f} "
            f"ratio={ms_tps / th_tps:.3f}"
        )
    if packed:
        print(
            f"packed: mindsft_trained_tokens_per_s={packed['mindsft']:.1f} "
            f"torch_padded={packed['padded']:.1f} torch_packed={packed['packed']:.1f} "
            f"ratio_padded={packed['mindsft'] / packed['padded']:.3f} "
            f"ratio_packed={packed['mindsft'] / packed['packed']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

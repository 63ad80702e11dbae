"""The fine-tuning loop in named steps: setup, resume, train, evaluate, save.

trainer = Trainer(cfg, RunPaths(dataset, base_ckpt, output_dir), rank, world)
trainer.setup()
trainer.resume()          # only with --resume_training
trainer.train()
"""

import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import numpy as np
from tqdm import tqdm

from mindsft.data.reader import MindRecordBatches
from mindsft.errors import MindsftError
from mindsft.models.config import LlamaConfig
from mindsft.models.llama import LlamaForCausalLM
from mindsft.models.loading import load_weights, read_checkpoint
from mindsft.models.loss import shift_for_causal_lm, token_nll_sum
from mindsft.pet.lora import (
    count_params,
    draw_dropout_masks,
    freeze_base,
    inject_lora,
    size_dropout_masks,
)
from mindsft.train import checkpoint
from mindsft.train.config import FinetuneConfig
from mindsft.train.optim import AdamWeightDecay, learning_rate
from mindsft.train.step import TrainStep


@dataclass
class RunPaths:
    """Where a run reads and writes."""

    train_dataset: str
    """The qa MindRecord written by `mindsft preprocess`."""
    load_checkpoint: str
    """The converted base checkpoint (MindFormers names)."""
    output_dir: str
    """checkpoint/rank_*/, loss.jsonl, msrun_log/ go here."""


def evaluate_loss(net, batches, pad_token_id=0, ignore_index=-100) -> dict:
    """Token-weighted mean loss of `net` over `batches`: {loss, perplexity, tokens}."""

    @ms.jit
    def nll(input_ids, labels):
        tokens, targets = shift_for_causal_lm(input_ids, labels)
        return token_nll_sum(net(tokens), targets, tokens, pad_token_id, ignore_index)

    was_training = net.training
    net.set_train(False)
    total, count = 0.0, 0.0
    for batch in batches:
        s, n = nll(ms.Tensor(batch["input_ids"]), ms.Tensor(batch["labels"]))
        total += float(s.asnumpy())
        count += float(n.asnumpy())
    net.set_train(was_training)
    loss = total / max(count, 1.0)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": int(count)}


class Trainer:
    """One worker of a (possibly data-parallel) fine-tuning run."""

    def __init__(
        self, cfg: FinetuneConfig, paths: RunPaths, rank: int = 0, world_size: int = 1, say=None
    ):
        self.cfg, self.paths = cfg, paths
        self.rank, self.world = rank, world_size
        self.output_dir = Path(paths.output_dir)
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.start_epoch, self.start_step = 0, 0  # position to continue from
        self.last_checkpoint = None

    # ---- setup --------------------------------------------------------------
    def setup(self) -> None:
        """Build the model, load the base weights, apply LoRA, the optimizer and the data."""
        cfg, tc = self.cfg, self.cfg.train
        ms.set_seed(tc.seed)
        np.random.seed(tc.seed)
        if self.rank == 0 and cfg.unsupported:
            self.say(
                f"{cfg.source}: not implemented by mindsft, results may differ: "
                f"{', '.join(cfg.unsupported)}"
            )
        self.model_config = LlamaConfig.from_mindformers(
            cfg.model_config, where=f"{cfg.source}: model_config"
        )
        self.batches = MindRecordBatches(
            self.paths.train_dataset,
            tc.batch_size,
            shard_id=self.rank,
            num_shards=self.world,
            shuffle=tc.shuffle,
            seed=tc.seed,
            drop_remainder=True,
        )
        if self.batches.seq_length != self.model_config.seq_length:
            raise MindsftError(
                f"{self.paths.train_dataset}: dataset seq_length {self.batches.seq_length} "
                "differs from "
                f"the config's seq_length {self.model_config.seq_length} ({cfg.source})"
            )
        per_epoch = len(self.batches)
        if tc.num_samples:
            per_epoch = min(per_epoch, tc.num_samples // (tc.batch_size * self.world))
        self.steps_per_epoch = per_epoch // tc.gradient_accumulation_steps
        self.total_steps = tc.epochs * self.steps_per_epoch
        if self.total_steps < 1:
            raise MindsftError(
                f"{self.paths.train_dataset}: {self.batches.rows} rows give no optimizer step "
                "at batch_size "
                f"{tc.batch_size} x {self.world} worker(s) x {tc.gradient_accumulation_steps} "
                "accumulation"
            )

        self.net = LlamaForCausalLM(self.model_config)
        load_weights(self.net, self.paths.load_checkpoint)
        if cfg.lora is not None:
            inject_lora(self.net, cfg.lora, seed=tc.seed)
            freeze_base(self.net)
            self.net.apply_compute_dtype()
        self.net.set_train(True)
        self.params = self.net.trainable_params()
        # LoRA dropout masks: one (batch_size * seq_length, in) bool per wrapped module
        self.dropout_masks = size_dropout_masks(self.net, tc.batch_size * self.batches.seq_length)
        self.keep = 1.0 - cfg.lora.lora_dropout if cfg.lora is not None else 1.0
        self._mask_pool, self._next_masks = None, None
        trainable, total = count_params(self.net)
        if self.rank == 0:
            self.say(
                f"trainable params: {trainable:,} || all params: {total:,} || trainable%: "
                f"{100.0 * trainable / total:.4f}"
            )
        self.optimizer = AdamWeightDecay(self.params, cfg.optimizer)
        accumulate = tc.gradient_accumulation_steps > 1
        self.step_fn = TrainStep(
            self.net,
            self.optimizer,
            self.params,
            pad_token_id=self.model_config.pad_token_id,
            ignore_index=self.model_config.ignore_token_id,
            max_grad_norm=tc.max_grad_norm,
            world_size=self.world,
            accumulate=accumulate,
            dropout_masks=self.dropout_masks,
            jit=tc.jit,
        )

    # ---- resume -------------------------------------------------------------
    def resume(self) -> Path | None:
        """Load the newest checkpoint every local rank has; return it (None: fresh start)."""
        mine = checkpoint.list_checkpoints(self.output_dir, self.rank)
        common = {p.name.rsplit("-", 1)[1] for p in mine}
        for r in range(self.world):
            if r != self.rank and checkpoint.rank_dir(self.output_dir, r).is_dir():
                common &= {
                    p.name.rsplit("-", 1)[1]
                    for p in checkpoint.list_checkpoints(self.output_dir, r)
                }
        usable = [p for p in mine if p.name.rsplit("-", 1)[1] in common]
        if not usable:
            self.say(
                f"rank {self.rank}: no checkpoint under "
                f"{checkpoint.rank_dir(self.output_dir, self.rank)}; "
                "training from the start"
            )
            return None
        path = usable[-1]
        stored = read_checkpoint(path)
        wanted = {p.name: p for p in self._saved_parameters()}
        missing = [n for n in wanted if n not in stored]
        if missing:
            raise MindsftError(
                f"{path}: missing {len(missing)} parameter(s) to resume: {', '.join(missing[:6])}"
            )
        for name, param in wanted.items():
            param.set_data(stored[name].astype(param.dtype))
        epoch, step_in_epoch, global_step = checkpoint.read_position(stored, path)
        if global_step != epoch * self.steps_per_epoch + step_in_epoch:
            raise MindsftError(
                f"{path}: position (epoch {epoch}, step {step_in_epoch}) does not fit this run's "
                f"{self.steps_per_epoch} steps per epoch"
            )
        self.start_epoch, self.start_step = epoch, step_in_epoch
        if self.start_step == self.steps_per_epoch:
            self.start_epoch, self.start_step = epoch + 1, 0
        self.last_checkpoint = path
        if self.rank == 0:
            self.say(f"resumed from {path} at optimizer step {global_step}")
        return path

    # ---- train --------------------------------------------------------------
    def train(self, after_step=None) -> dict:
        """Run the remaining optimizer steps; return a summary. `after_step`, when
        given, is called with each step's loss-log record (bench/train.py runs the
        peer's step there, so both frameworks meet the same machine load)."""
        tc, accum = self.cfg.train, self.cfg.train.gradient_accumulation_steps
        done = self.start_epoch * self.steps_per_epoch + self.start_step
        log = self._open_log(done)
        bar = tqdm(
            total=self.total_steps,
            initial=done,
            disable=None if self.rank == 0 else True,
            desc="finetune",
            unit="step",
            file=sys.stderr,
        )
        tokens_per_micro = tc.batch_size * self.batches.seq_length * self.world
        t0 = time.perf_counter()
        loss = float("nan")
        for epoch in range(self.start_epoch, tc.epochs):
            first = self.start_step if epoch == self.start_epoch else 0
            self.batches.set_epoch(epoch)
            self.batches.start_batch = first * accum
            batches = iter(self.batches)
            for step_in_epoch in range(first, self.steps_per_epoch):
                gstep = epoch * self.steps_per_epoch + step_in_epoch  # 0-based optimizer step
                lr = learning_rate(self.cfg.schedule, gstep, self.total_steps)
                t_step = time.perf_counter()
                loss_sum, count, norm = self._one_step(batches, gstep, lr)
                loss = float(loss_sum.asnumpy()) / max(float(count.asnumpy()), 1.0)
                grad_norm = float(norm.asnumpy())
                if not math.isfinite(loss):
                    kept = self.last_checkpoint or "none written yet"
                    raise MindsftError(
                        f"step {gstep + 1}: loss is {loss}; training stopped (last good "
                        f"checkpoint: {kept})"
                    )
                tokens = tokens_per_micro * accum
                record = {
                    "step": gstep + 1,
                    "epoch": epoch + 1,
                    "loss": loss,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "tokens": tokens,
                    "tokens_per_s": tokens / (time.perf_counter() - t_step),
                    "elapsed": time.perf_counter() - t0,
                }
                if log is not None:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                if after_step is not None:
                    after_step(record)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
                bar.update(1)
                if (gstep + 1) % max(
                    1, tc.save_checkpoint_steps
                ) == 0 or gstep + 1 == self.total_steps:
                    self.save(epoch, step_in_epoch + 1)
        bar.close()
        if log is not None:
            log.close()
        if self._mask_pool is not None:
            self._mask_pool.shutdown(cancel_futures=True)
            self._mask_pool, self._next_masks = None, None
        return {
            "steps": self.total_steps,
            "final_loss": loss,
            "checkpoint": str(self.last_checkpoint),
        }

    def _one_step(self, batches, gstep: int, lr: float):
        accum = self.cfg.train.gradient_accumulation_steps
        lr_t = ms.Tensor(lr, ms.float32)
        for j in range(accum):
            batch = next(batches)
            # dropout masks: a function of (seed, step, micro-batch, rank) only
            key = ((self.cfg.train.seed * 1000003 + gstep) * accum + j) * self.world + self.rank
            masks = self._dropout_masks(key)
            ids, labels = ms.Tensor(batch["input_ids"]), ms.Tensor(batch["labels"])
            if accum == 1:
                return self.step_fn.fused(ids, labels, masks, lr_t)
            self.step_fn.micro(ids, labels, masks)
        return self.step_fn.apply(lr_t)

    def _draw_masks(self, key: int) -> tuple:
        return draw_dropout_masks(key, [m.shape for m in self.dropout_masks], self.keep)

    def _dropout_masks(self, key: int):
        """The LoRA dropout masks of `key` as step inputs, and a background draw of
        the next micro-batch's (key + world: the next micro-batch, or the next
        step's first), which NumPy makes while the compiled step runs (MindSpore
        releases the GIL); a resumed or reordered run just draws in place."""
        if not self.dropout_masks:
            return ()
        pending, self._next_masks = self._next_masks, None
        drawn = pending[1].result() if pending and pending[0] == key else self._draw_masks(key)
        if self._mask_pool is None:
            self._mask_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lora-masks")
        self._next_masks = (
            key + self.world,
            self._mask_pool.submit(self._draw_masks, key + self.world),
        )
        # step inputs, not graph constants (a constant tuple recompiles the step)
        return ms.mutable(tuple(ms.Tensor(m) for m in drawn))

    def _open_log(self, done: int):
        """loss.jsonl (rank 0 only), keeping the records of steps already done."""
        if self.rank != 0:
            return None
        path = self.output_dir / "loss.jsonl"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        kept = []
        if done and path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line and json.loads(line)["step"] <= done
            ]
        log = path.open("w")
        log.writelines(line + "\n" for line in kept)
        return log

    # ---- evaluate -----------------------------------------------------------
    def evaluate(self, dataset_path, batch_size: int = 1) -> dict:
        """Loss, perplexity and token count of the current weights on a MindRecord."""
        batches = MindRecordBatches(dataset_path, batch_size, drop_remainder=False)
        return evaluate_loss(
            self.net, batches, self.model_config.pad_token_id, self.model_config.ignore_token_id
        )

    # ---- save ---------------------------------------------------------------
    def _saved_parameters(self) -> list:
        """What a checkpoint holds: the trained weights (LoRA: only A and B) and the
        optimizer state."""
        weights = self.params if self.cfg.lora is not None else self.net.get_parameters()
        return list(weights) + self.optimizer.state_parameters()

    def save(self, epoch: int, step_in_epoch: int) -> Path:
        """Write this rank's checkpoint after `step_in_epoch` steps of 0-based `epoch`."""
        tc = self.cfg.train
        path = checkpoint.checkpoint_path(
            self.output_dir, self.rank, tc.prefix, epoch + 1, step_in_epoch
        )
        tensors = {p.name: p for p in self._saved_parameters()}
        tensors.update(checkpoint.position_tensors(epoch, step_in_epoch))
        self.last_checkpoint = checkpoint.save(path, tensors, tc.keep_checkpoint_max)
        return self.last_checkpoint

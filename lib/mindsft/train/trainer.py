"""The training loop in named steps: setup, resume, train, evaluate, save.

trainer = Trainer(cfg, RunPaths(dataset, base_ckpt, output_dir), rank, world, stop=stop)
trainer.setup()
trainer.resume()          # only with --resume_training
trainer.train()

`cfg.run.run_mode` "train" pretrains on a wiki MindRecord (every token a target),
anything else fine-tunes on a qa one. With `cfg.run.do_eval`, rank 0 evaluates
`RunPaths.eval_dataset` every `eval_step_interval` steps and after every
`eval_epoch_interval`-th epoch, as MindFormers' EvalCallBack does.

Resume takes the newest save every rank holds and whose checksum verifies on
every rank (the ranks agree through a collective), saying which newer ones it
skipped and why, and refuses a checkpoint whose run signature differs in a way
it cannot handle (mindsft.train.signature). Nothing non-finite is ever saved:
a non-finite loss or gradient norm stops the run before its step is saved, and
a save finding a non-finite weight or optimizer state writes nothing. With a
`stop` (signals.StopSignals), a SIGTERM/SIGINT on any rank stops every rank
after the same step, with a checkpoint of it (signals.Stopped).
"""

import json
import math
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import numpy as np

from mindsft.atomic import cannot_write
from mindsft.data.batch import step_batch
from mindsft.data.reader import MindRecordBatches, require_kind
from mindsft.errors import MindsftError
from mindsft.inference.evaluate import LossEvaluator, check_seq_length
from mindsft.models.config import LlamaConfig
from mindsft.models.llama import LlamaForCausalLM
from mindsft.models.loading import (
    LoadedWeights,
    load_lora_weights,
    load_weights,
    read_checkpoint,
)
from mindsft.pet.config import LORA_ALPHA_RECORD
from mindsft.pet.dropout import LoraDropout
from mindsft.pet.lora import count_params, freeze_base, inject_lora
from mindsft.plan.launch import check_launch
from mindsft.progress import progress_bar
from mindsft.train import checkpoint
from mindsft.train.checkpoint import NonFiniteTensor, RunCheckpoints
from mindsft.train.config import FinetuneConfig
from mindsft.train.launch import all_sum
from mindsft.train.load_checkpoint import check_auto_trans
from mindsft.train.optim import AdamWeightDecay, learning_rate
from mindsft.train.signals import Stopped
from mindsft.train.signature import differences, run_signature
from mindsft.train.step import TrainStep
from mindsft.train.tensorboard import EVAL_LOSS, NO_WRITER, open_writer

# the MindRecord kind each training run mode reads (`preprocess --dataset_type`)
DATASET_KIND = {"train": "wiki", "finetune": "qa"}


def dataset_kind(run_mode) -> str:
    """The MindRecord kind a run mode trains on: wiki for train, qa otherwise."""
    return DATASET_KIND.get(run_mode, "qa")


def append_record(log, record: dict) -> None:
    """Write one JSON line to the loss log (a binary, unbuffered file, so that a full
    disk fails here, once, and the error names the log)."""
    try:
        log.write((json.dumps(record) + "\n").encode())
    except OSError as exc:
        raise cannot_write(log.name, exc) from None


@dataclass
class RunPaths:
    """Where a run reads and writes."""

    train_dataset: str
    """The qa MindRecord written by `mindsft preprocess`."""
    load_checkpoint: str
    """The weights to start from: a file or a folder (mindsft.train.load_checkpoint);
    empty: the seeded random initialisation (pretraining from scratch)."""
    output_dir: str
    """checkpoint/rank_*/, loss.jsonl, msrun_log/ go here."""
    eval_dataset: str = ""
    """The MindRecord evaluated during training (cfg.run.do_eval)."""
    auto_trans_ckpt: bool = False
    """MindFormers' --auto_trans_ckpt (resharding; refused unless pure data parallel)."""


class Trainer:
    """One worker of a (possibly data-parallel) fine-tuning run."""

    def __init__(
        self,
        cfg: FinetuneConfig,
        paths: RunPaths,
        rank: int = 0,
        world_size: int = 1,
        say=None,
        stop=None,
    ):
        self.cfg, self.paths = cfg, paths
        self.rank, self.world = rank, world_size
        self.output_dir = Path(paths.output_dir)
        self.ckpts = RunCheckpoints(self.output_dir, cfg.train.prefix)
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.stop = stop  # a signals.StopSignals, or None: never stop early
        self.start_epoch, self.start_step = 0, 0  # position to continue from
        self.last_checkpoint = None
        self.tensorboard = NO_WRITER  # scalar(tag, value, step); event files while training

    # ---- setup --------------------------------------------------------------
    def setup(self) -> None:
        """Build the data, the model (base weights loaded, LoRA applied), the
        dropout masks, the optimizer and the compiled step."""
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
        left = self.ckpts.remove_partial(self.rank)
        if left:
            self.say(
                f"rank {self.rank}: removed {len(left)} temporary file(s) of an interrupted "
                f"checkpoint write: {', '.join(p.name for p in left)}"
            )
        target = ms.get_context("device_target")
        self.plan = check_launch(cfg, self.world, target, self.rank, self.say)  # may refuse
        self._setup_data()
        self._setup_eval()
        self._setup_model()
        self._setup_step()
        self.signature = run_signature(
            cfg,
            dataset=self.paths.train_dataset,
            rows=self.batches.rows,
            base_files=self.loaded.files,
            world_size=self.world,
            total_steps=self.total_steps,
        )

    def _setup_data(self) -> None:
        """This rank's shard of the MindRecord and the run's length in optimizer steps."""
        tc = self.cfg.train
        self.batches = MindRecordBatches(
            self.paths.train_dataset,
            tc.batch_size,
            shard_id=self.rank,
            num_shards=self.world,
            shuffle=tc.shuffle,
            seed=tc.seed,
            drop_remainder=True,
        )
        mode = self.cfg.run.run_mode or "finetune"
        require_kind(
            self.paths.train_dataset, self.batches.kind, dataset_kind(mode), f"run_mode {mode}"
        )
        if self.batches.seq_length != self.model_config.seq_length:
            packed = "packed " if self.batches.packed else ""
            raise MindsftError(
                f"{self.paths.train_dataset}: {packed}dataset seq_length {self.batches.seq_length} "
                "differs from "
                f"the config's seq_length {self.model_config.seq_length} ({self.cfg.source})"
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

    def _setup_eval(self) -> None:
        """With do_eval: the eval dataset's batches on rank 0 (None elsewhere and without)."""
        run, source = self.cfg.run, self.cfg.source
        self.eval_batches, self.evaluator = None, None
        if not run.do_eval:
            return
        if not self.paths.eval_dataset:
            raise MindsftError(
                f"{source}: do_eval needs an eval dataset (--eval_dataset_dir or "
                "eval_dataset.data_loader.dataset_dir)"
            )
        if run.metric != "PerplexityMetric":
            raise MindsftError(
                f"{source}: metric {run.metric}: evaluation during training computes "
                "PerplexityMetric only"
            )
        if self.rank == 0:
            tc = self.cfg.train  # num_samples limits the eval rows too, as in MindFormers
            batches = MindRecordBatches(
                self.paths.eval_dataset,
                tc.batch_size,
                drop_remainder=False,
                num_samples=tc.num_samples,
            )
            check_seq_length(
                source, self.model_config, batches.seq_length, batches.path, batches.packed
            )
            self.eval_batches = batches

    def _setup_model(self) -> None:
        """The model with the base weights, LoRA injected and frozen around it, and
        its dropout masks sized for a micro-batch."""
        cfg, tc, source = self.cfg, self.cfg.train, self.paths.load_checkpoint
        check_auto_trans(self.paths.auto_trans_ckpt, cfg.parallel_config, cfg.source)
        self.net = LlamaForCausalLM(self.model_config)  # seeded random initialisation
        self.loaded = LoadedWeights([])
        if source:  # pretraining may start from scratch
            self.loaded = load_weights(
                self.net, source, lora=cfg.lora is not None, rank=self.rank, world=self.world
            )
        if cfg.lora is not None:
            inject_lora(self.net, cfg.lora, seed=tc.seed)
            load_lora_weights(self.net, self.loaded.lora, source)
            if self.loaded.lora and self.rank == 0:
                self.say(f"continuing from the LoRA matrices in {source}")
            freeze_base(self.net)
            self.net.apply_compute_dtype()
        if cfg.recompute:  # after LoRA: the wrapped layers must be inside the recompute
            self.net.recompute_layers()
        self.net.set_train(True)
        self.params = self.net.trainable_params()
        self.dropout = LoraDropout(
            self.net,
            tc.batch_size,
            self.batches.seq_length,
            seed=tc.seed,
            accumulation=tc.gradient_accumulation_steps,
            world_size=self.world,
            rank=self.rank,
        )
        trainable, total = count_params(self.net)
        if self.rank == 0:
            self.say(
                f"trainable params: {trainable:,} || all params: {total:,} || trainable%: "
                f"{100.0 * trainable / total:.4f}"
            )

    def _setup_step(self) -> None:
        tc = self.cfg.train
        self.optimizer = AdamWeightDecay(self.params, self.cfg.optimizer)
        self.step_fn = TrainStep(
            self.net,
            self.optimizer,
            self.params,
            ignore_index=self.model_config.ignore_token_id,
            max_grad_norm=tc.max_grad_norm,
            world_size=self.world,
            accumulate=tc.gradient_accumulation_steps > 1,
            dropout_masks=self.dropout.parameters,
            jit=tc.jit,
        )

    # ---- resume -------------------------------------------------------------
    def resume(self) -> Path | None:
        """Load the newest save every rank holds and can verify; return its path
        (None: no usable checkpoint, a fresh start)."""
        found = self.ckpts.newest_usable(self.rank, self.world, all_sum, self.say)
        if found is None:
            self.say(
                f"rank {self.rank}: no usable checkpoint under {self.ckpts.root}; "
                "training from the start"
            )
            return None
        path = found.path
        stored = read_checkpoint(path)
        epoch, step_in_epoch, global_step = checkpoint.read_position(stored, path)
        self._check_signature(stored, path, global_step)
        if global_step != epoch * self.steps_per_epoch + step_in_epoch:
            raise MindsftError(
                f"{path}: position (epoch {epoch}, step {step_in_epoch}) does not fit this run's "
                f"{self.steps_per_epoch} steps per epoch"
            )
        if global_step > self.total_steps:
            raise MindsftError(
                f"{path}: holds {global_step} steps, more than this run's {self.total_steps}"
            )
        self._load_state(stored, path)
        self.start_epoch, self.start_step = epoch, step_in_epoch
        if self.start_step == self.steps_per_epoch:
            self.start_epoch, self.start_step = epoch + 1, 0
        self.last_checkpoint = path
        if self.rank == 0:
            self.say(f"resumed from {path} at optimizer step {global_step}")
        return path

    def _check_signature(self, stored: dict, path: Path, done: int) -> None:
        saved = checkpoint.read_signature(stored)
        if saved is None:
            raise MindsftError(
                f"{path}: carries no run signature (not written by this mindsft), so it "
                "cannot be checked against this run: resume refused"
            )
        found = differences(saved, self.signature, self.cfg.schedule, done)
        if found:
            raise MindsftError(
                f"{path}: written by a run with other settings, resume refused: " + "; ".join(found)
            )

    def _load_state(self, stored: dict, path: Path) -> None:
        """Set the trained weights and the optimizer state from a loaded checkpoint."""
        wanted = {p.name: p for p in self._saved_parameters()}
        missing = [n for n in wanted if n not in stored]
        if missing:
            raise MindsftError(
                f"{path}: missing {len(missing)} parameter(s) to resume: {', '.join(missing[:6])}"
            )
        for name, param in wanted.items():
            param.set_data(stored[name].astype(param.dtype))

    # ---- train --------------------------------------------------------------
    def train(self, after_step=None) -> dict:
        """Run the remaining optimizer steps; return a summary. `after_step`, when
        given, is called with each step's loss-log record (bench/train.py runs the
        peer's step there, so both frameworks meet the same machine load)."""
        done = self.start_epoch * self.steps_per_epoch + self.start_step
        every = max(1, self.cfg.train.save_checkpoint_steps)
        loss = float("nan")
        with (
            self.dropout,
            self._loss_log(done) as log,
            self._progress(done) as bar,
            open_writer(self.cfg.tensorboard, self.rank, done) as self.tensorboard,
        ):
            t0 = time.perf_counter()
            if self.world == 1:  # many workers learn of a stop through a step's all-reduce
                self._stop_point(done, self.stop_votes())
            for epoch, step_in_epoch, batches in self._remaining_steps():
                record, votes = self._train_step(batches, epoch, step_in_epoch, t0)
                if self.stop is not None:
                    self.stop.reclaim()
                loss = record["loss"]
                self._record(record, log, bar, after_step)
                if self._eval_due(record["step"], epoch, step_in_epoch + 1):
                    self.evaluate(record, log)
                saved = None
                if record["step"] % every == 0 or record["step"] == self.total_steps:
                    saved = self.save(epoch, step_in_epoch + 1)
                self._stop_point(record["step"], votes, epoch, step_in_epoch + 1, saved)
        return {
            "steps": self.total_steps,
            "final_loss": loss,
            "checkpoint": str(self.last_checkpoint),
        }

    def _remaining_steps(self):
        """Yield (0-based epoch, step in it, the epoch's batch iterator) for every
        optimizer step still to run, the data positioned after the steps done."""
        tc = self.cfg.train
        for epoch in range(self.start_epoch, tc.epochs):
            first = self.start_step if epoch == self.start_epoch else 0
            self.batches.set_epoch(epoch)
            self.batches.start_batch = first * tc.gradient_accumulation_steps
            batches = iter(self.batches)
            for step_in_epoch in range(first, self.steps_per_epoch):
                yield epoch, step_in_epoch, batches

    def _train_step(self, batches, epoch: int, step_in_epoch: int, t0: float) -> tuple:
        """One optimizer step: its loss-log record and the stop votes of every
        worker (stop_votes). A non-finite loss or gradient norm stops the run."""
        tc = self.cfg.train
        gstep = epoch * self.steps_per_epoch + step_in_epoch  # 0-based optimizer step
        lr = learning_rate(self.cfg.schedule, gstep, self.total_steps)
        t_step = time.perf_counter()
        loss_sum, count, norm, votes = self._one_step(batches, gstep, lr)
        trained = float(count.asnumpy())
        loss = float(loss_sum.asnumpy()) / max(trained, 1.0)
        grad_norm = float(norm.asnumpy())
        for what, value in (("loss", loss), ("gradient norm", grad_norm)):
            if not math.isfinite(value):
                raise self._diverged(gstep + 1, f"{what} is {value}")
        tokens = tc.batch_size * self.batches.seq_length * self.world
        tokens *= tc.gradient_accumulation_steps
        record = {
            "step": gstep + 1,
            "epoch": epoch + 1,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": tokens,
            "trained_tokens": int(trained),
            "tokens_per_s": tokens / (time.perf_counter() - t_step),
            "elapsed": time.perf_counter() - t0,
        }
        return record, votes.asnumpy()

    def _one_step(self, batches, gstep: int, lr: float):
        accum = self.cfg.train.gradient_accumulation_steps
        lr_t = ms.Tensor(lr, ms.float32)
        votes = ms.Tensor(self.stop_votes())
        mc = self.model_config
        for j in range(accum):
            batch = step_batch(next(batches), mc.pad_token_id, mc.ignore_token_id)
            masks = self.dropout.masks(gstep, j, batch.tokens.shape[1])
            if accum == 1:
                return self.step_fn.fused(*batch.tensors(), masks, lr_t, votes)
            self.step_fn.micro(*batch.tensors(), masks)
        return self.step_fn.apply(lr_t, votes)

    def _record(self, record: dict, log, bar, after_step) -> None:
        """Hand one step's record on: the loss log, TensorBoard, `after_step`, the
        progress bar."""
        if log is not None:
            append_record(log, record)
        self.tensorboard.step(record)
        if after_step is not None:
            after_step(record)
        bar.set_postfix(
            loss=f"{record['loss']:.4f}",
            lr=f"{record['lr']:.2e}",
            tokens_per_s=f"{record['tokens_per_s']:.0f}",
        )
        bar.update(1)

    # ---- evaluate -----------------------------------------------------------
    def _eval_due(self, step: int, epoch: int, steps_in_epoch: int) -> bool:
        """Whether rank 0 evaluates after optimizer step `step` (1-based), the
        `steps_in_epoch`-th of 0-based `epoch`: every eval_step_interval steps, or
        at the end of every eval_epoch_interval-th epoch (<= 0: never)."""
        if self.eval_batches is None:
            return False
        run = self.cfg.run
        by_step = run.eval_step_interval > 0 and step % run.eval_step_interval == 0
        by_epoch = (
            steps_in_epoch == self.steps_per_epoch
            and run.eval_epoch_interval > 0
            and (epoch + 1) % run.eval_epoch_interval == 0
        )
        return by_step or by_epoch

    def evaluate(self, record: dict, log) -> dict:
        """Eval loss of the weights after `record`'s step, as a loss-log record of its
        own: {"step", "epoch", "eval_loss", "eval_perplexity", "eval_tokens", ...}."""
        if self.evaluator is None:
            self.evaluator = LossEvaluator(self.net)
        t0 = time.perf_counter()
        metrics = self.evaluator(self.eval_batches, self.paths.eval_dataset)
        entry = {
            "step": record["step"],
            "epoch": record["epoch"],
            "eval_loss": metrics["loss"],
            "eval_perplexity": metrics["perplexity"],
            "eval_tokens": metrics["tokens"],
            "eval_time_s": time.perf_counter() - t0,
        }
        if log is not None:
            append_record(log, entry)
        self.tensorboard.scalar(EVAL_LOSS, metrics["loss"], record["step"])
        self.say(
            f"Eval result: {{'loss': {metrics['loss']:.6f}, 'PPL': {metrics['perplexity']:.4f}}} "
            f"at step {record['step']}, eval time is {entry['eval_time_s']:.3f} s."
        )
        return entry

    def _progress(self, done: int):
        """Steps done of the run, with the last loss, learning rate, tokens/s and ETA."""
        return progress_bar(
            self.total_steps,
            initial=done,
            desc=self.cfg.run.run_mode or "finetune",
            unit="step",
            show=self.rank == 0,
        )

    @contextmanager
    def _loss_log(self, done: int):
        """loss.jsonl open for appending records (rank 0 only; None elsewhere), keeping
        the records of steps already done."""
        if self.rank != 0:
            yield None
            return
        path = self.output_dir / "loss.jsonl"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        kept = []
        if done and path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line and json.loads(line)["step"] <= done
            ]
        with path.open("wb", buffering=0) as log:  # unbuffered: a failed write fails there
            log.write("".join(line + "\n" for line in kept).encode())
            yield log

    # ---- save ---------------------------------------------------------------
    def _saved_parameters(self) -> list:
        """What a checkpoint holds: the trained weights (LoRA: only A and B) and the
        optimizer state."""
        weights = self.params if self.cfg.lora is not None else self.net.get_parameters()
        return list(weights) + self.optimizer.state_parameters()

    def save(self, epoch: int, step_in_epoch: int) -> Path:
        """Write this rank's checkpoint after `step_in_epoch` steps of 0-based `epoch`,
        with the run's signature; weights or optimizer state that are not finite
        stop the run and are not written."""
        tensors = {p.name: p for p in self._saved_parameters()}
        tensors.update(checkpoint.position_tensors(epoch, step_in_epoch))
        if self.cfg.lora is not None:  # merge-lora checks it against its config
            tensors[LORA_ALPHA_RECORD] = ms.Tensor(np.float32(self.cfg.lora.lora_alpha))
        tensors[checkpoint.SIGNATURE] = checkpoint.signature_tensor(self.signature)
        try:
            self.last_checkpoint = self.ckpts.save(
                self.rank, epoch + 1, step_in_epoch, tensors, self.cfg.train.keep_checkpoint_max
            )
        except NonFiniteTensor as exc:
            step = epoch * self.steps_per_epoch + step_in_epoch
            raise self._diverged(step, f"{exc.name} is not finite (not saved)") from None
        return self.last_checkpoint

    def _diverged(self, step: int, what: str) -> MindsftError:
        kept = self.last_checkpoint or "none written yet"
        return MindsftError(f"step {step}: {what}; training stopped (last good checkpoint: {kept})")

    # ---- stop ---------------------------------------------------------------
    def stop_votes(self) -> np.ndarray:
        """This worker's stop votes, [SIGTERM received, SIGINT received] (float32):
        summed over the workers inside the train step."""
        got = self.stop.signum if self.stop is not None else None
        return np.array([got == signal.SIGTERM, got == signal.SIGINT], np.float32)

    def _stop_point(self, done: int, votes, epoch=None, step_in_epoch=None, saved=None) -> None:
        """At a step boundary (`done` steps done), given the stop `votes` of every
        worker (the same on all of them; SIGTERM first): write this step's
        checkpoint unless `saved` already is, wait for every rank to have written
        its own, and raise Stopped. One process acts on a signal as soon as it is
        recorded; many workers on the votes that went into the step just done."""
        if self.world == 1:
            votes = self.stop_votes()
        if not votes.any():
            return
        signum = signal.SIGTERM if votes[0] else signal.SIGINT
        where = f"after step {done} of {self.total_steps}"
        if epoch is None:
            newest = f"the newest is {self.last_checkpoint}" if self.last_checkpoint else "none"
            raise Stopped(signum, f"{where}: no checkpoint written ({newest})")
        try:
            path = saved or self.save(epoch, step_in_epoch)
            detail = f"{where}; checkpoint written: {path}"
        except MindsftError as exc:
            detail = f"{where}; no checkpoint written: {exc}"
        all_sum(np.zeros(1, np.float32), self.world)  # every rank has written its own
        raise Stopped(signum, detail)

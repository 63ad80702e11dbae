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

The Trainer runs these steps; the parts live beside it: the data
(train.datasets), evaluation during training (train.evaluation), the loss log and
progress bar (train.records), resume's checks and loading (train.resume), what a
checkpoint holds (train.save), stopping on a signal (train.stop), the dropout
masks (pet.dropout) and the checkpoint files (train.checkpoint).
"""

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import numpy as np

from mindsft.data.batch import step_batch
from mindsft.models.config import LlamaConfig
from mindsft.models.llama import LlamaForCausalLM
from mindsft.models.loading import LoadedWeights, load_lora_weights, load_weights
from mindsft.pet.dropout import LoraDropout
from mindsft.pet.lora import count_params, freeze_base, inject_lora
from mindsft.plan.launch import check_launch
from mindsft.train.checkpoint import NonFiniteTensor, RunCheckpoints
from mindsft.train.config import FinetuneConfig
from mindsft.train.datasets import run_length, train_batches
from mindsft.train.evaluation import PeriodicEval, eval_batches
from mindsft.train.launch import all_sum
from mindsft.train.load_checkpoint import check_auto_trans
from mindsft.train.optim import AdamWeightDecay, learning_rate
from mindsft.train.records import loss_log, report_step, step_progress
from mindsft.train.resume import load_resume_point
from mindsft.train.save import checkpoint_tensors, diverged, saved_parameters
from mindsft.train.signature import run_signature
from mindsft.train.step import TrainStep
from mindsft.train.stop import stop_if_voted, stop_votes
from mindsft.train.tensorboard import NO_WRITER, open_writer


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
        """This rank's shard of the MindRecord, the run's length in optimizer steps,
        and with do_eval the evaluation during training (mindsft.train.evaluation)."""
        cfg, dataset = self.cfg, self.paths.train_dataset
        seq_length = self.model_config.seq_length
        self.batches = train_batches(cfg, dataset, seq_length, self.rank, self.world)
        self.steps_per_epoch, self.total_steps = run_length(
            self.batches, cfg.train, self.world, dataset
        )
        found = eval_batches(cfg, self.paths.eval_dataset, self.model_config, self.rank)
        self.periodic_eval = PeriodicEval(
            found, self.paths.eval_dataset, cfg.run, self.steps_per_epoch
        )

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

    def resume(self) -> Path | None:
        """Load the newest save every rank holds and can verify (mindsft.train.resume);
        return its path (None: no usable checkpoint, a fresh start)."""
        found = self.ckpts.newest_usable(self.rank, self.world, all_sum, self.say)
        if found is None:
            self.say(
                f"rank {self.rank}: no usable checkpoint under {self.ckpts.root}; "
                "training from the start"
            )
            return None
        path = found.path
        epoch, step_in_epoch, global_step = load_resume_point(
            path,
            self._saved_parameters(),
            self.signature,
            self.cfg.schedule,
            self.steps_per_epoch,
            self.total_steps,
        )
        self.start_epoch, self.start_step = epoch, step_in_epoch
        if self.start_step == self.steps_per_epoch:
            self.start_epoch, self.start_step = epoch + 1, 0
        self.last_checkpoint = path
        if self.rank == 0:
            self.say(f"resumed from {path} at optimizer step {global_step}")
        return path

    def train(self, after_step=None) -> dict:
        """Run the remaining optimizer steps; return a summary. `after_step`, when
        given, is called with each step's loss-log record (bench/train.py runs the
        peer's step there, so both frameworks meet the same machine load)."""
        done = self.start_epoch * self.steps_per_epoch + self.start_step
        every = max(1, self.cfg.train.save_checkpoint_steps)
        loss = float("nan")
        with (
            self.dropout,
            loss_log(self.output_dir, self.rank, done) as log,
            step_progress(self.total_steps, done, self.cfg.run.run_mode, self.rank) as bar,
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
                report_step(record, log, bar, self.tensorboard, after_step)
                if self.periodic_eval.due(record["step"], epoch, step_in_epoch + 1):
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
                raise diverged(gstep + 1, f"{what} is {value}", self.last_checkpoint)
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

    def evaluate(self, record: dict, log) -> dict:
        """Eval loss of the weights after `record`'s step, as a loss-log record of its
        own: {"step", "epoch", "eval_loss", "eval_perplexity", "eval_tokens", ...}."""
        return self.periodic_eval(self.net, record, log, self.tensorboard, self.say)

    def _saved_parameters(self) -> list:
        return saved_parameters(self.net, self.params, self.optimizer, self.cfg.lora)

    def save(self, epoch: int, step_in_epoch: int) -> Path:
        """Write this rank's checkpoint after `step_in_epoch` steps of 0-based `epoch`,
        with the run's signature; weights or optimizer state that are not finite
        stop the run and are not written."""
        tensors = checkpoint_tensors(
            self._saved_parameters(), epoch, step_in_epoch, self.signature, self.cfg.lora
        )
        try:
            self.last_checkpoint = self.ckpts.save(
                self.rank, epoch + 1, step_in_epoch, tensors, self.cfg.train.keep_checkpoint_max
            )
        except NonFiniteTensor as exc:
            step = epoch * self.steps_per_epoch + step_in_epoch
            what = f"{exc.name} is not finite (not saved)"
            raise diverged(step, what, self.last_checkpoint) from None
        return self.last_checkpoint

    def stop_votes(self) -> np.ndarray:
        """This worker's stop votes, [SIGTERM received, SIGINT received] (float32):
        summed over the workers inside the train step."""
        return stop_votes(self.stop)

    def _stop_point(self, done: int, votes, epoch=None, step_in_epoch=None, saved=None) -> None:
        """At a step boundary (`done` steps done), given the stop `votes` of every
        worker: stop (mindsft.train.stop), with a checkpoint of the step just done
        (`saved` if it is written already) unless there is none (`epoch` None). One
        process acts on a signal as soon as it is recorded; many workers on the
        votes that went into the step just done."""
        if self.world == 1:
            votes = self.stop_votes()

        def save() -> Path:
            return saved or self.save(epoch, step_in_epoch)

        where = f"after step {done} of {self.total_steps}"
        stop_if_voted(
            votes, where, self.world, self.last_checkpoint, None if epoch is None else save
        )

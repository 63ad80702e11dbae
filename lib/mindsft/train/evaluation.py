"""Evaluation during training (cfg.run.do_eval): rank 0 evaluates the eval
MindRecord every `eval_step_interval` steps and after every
`eval_epoch_interval`-th epoch, as MindFormers' EvalCallBack does, with the one
evaluation loop (mindsft.inference.evaluate.LossEvaluator)."""

import time

from mindsft.data.reader import MindRecordBatches
from mindsft.errors import MindsftError
from mindsft.inference.evaluate import LossEvaluator, check_seq_length
from mindsft.train.records import append_record
from mindsft.train.tensorboard import EVAL_LOSS


def eval_batches(cfg, eval_dataset: str, model_config, rank: int):
    """With do_eval: the eval dataset's batches on rank 0 (None elsewhere and
    without do_eval), after checking the config asks for what mindsft computes."""
    run, source = cfg.run, cfg.source
    if not run.do_eval:
        return None
    if not eval_dataset:
        raise MindsftError(
            f"{source}: do_eval needs an eval dataset (--eval_dataset_dir or "
            "eval_dataset.data_loader.dataset_dir)"
        )
    if run.metric != "PerplexityMetric":
        raise MindsftError(
            f"{source}: metric {run.metric}: evaluation during training computes "
            "PerplexityMetric only"
        )
    if rank != 0:
        return None
    tc = cfg.train  # num_samples limits the eval rows too, as in MindFormers
    batches = MindRecordBatches(
        eval_dataset, tc.batch_size, drop_remainder=False, num_samples=tc.num_samples
    )
    check_seq_length(source, model_config, batches.seq_length, batches.path, batches.packed)
    return batches


class PeriodicEval:
    """When to evaluate and the evaluation itself, over `batches` read from `path`
    (None: never evaluate)."""

    def __init__(self, batches, path: str, run, steps_per_epoch: int):
        self.batches, self.path = batches, path
        self.run, self.steps_per_epoch = run, steps_per_epoch
        self.evaluator = None  # built on first use

    def due(self, step: int, epoch: int, steps_in_epoch: int) -> bool:
        """Whether to evaluate after optimizer step `step` (1-based), the
        `steps_in_epoch`-th of 0-based `epoch`: every eval_step_interval steps, or
        at the end of every eval_epoch_interval-th epoch (<= 0: never)."""
        if self.batches is None:
            return False
        run = self.run
        by_step = run.eval_step_interval > 0 and step % run.eval_step_interval == 0
        by_epoch = (
            steps_in_epoch == self.steps_per_epoch
            and run.eval_epoch_interval > 0
            and (epoch + 1) % run.eval_epoch_interval == 0
        )
        return by_step or by_epoch

    def __call__(self, net, record: dict, log, tensorboard, say) -> dict:
        """Eval loss of `net` after `record`'s step, as a loss-log record of its own:
        {"step", "epoch", "eval_loss", "eval_perplexity", "eval_tokens", ...},
        appended to `log`, written to `tensorboard` and said."""
        if self.evaluator is None:
            self.evaluator = LossEvaluator(net)
        t0 = time.perf_counter()
        metrics = self.evaluator(self.batches, self.path)
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
        tensorboard.scalar(EVAL_LOSS, metrics["loss"], record["step"])
        say(
            f"Eval result: {{'loss': {metrics['loss']:.6f}, 'PPL': {metrics['perplexity']:.4f}}} "
            f"at step {record['step']}, eval time is {entry['eval_time_s']:.3f} s."
        )
        return entry

"""Held-out loss and perplexity with the loss MindFormers trains on (shifted labels,
ignore id and pad masked out). `LossEvaluator` is the one evaluation loop: over any
model already built and any batches (`evaluate_loss` for a single pass);
`evaluate_checkpoint` runs it for a checkpoint on a qa (padded or packed) or wiki
MindRecord, as `mindsft evaluate` and `mindsft run --run_mode eval` do. Batches are
laid out as for training (data/batch.py): cut after their last target, logits only
at the targets, attention within each sample of a packed row, so a packed
MindRecord gives the loss and token count of the padded one with the same samples."""

import json
import math
import time
from pathlib import Path

import mindspore as ms

from mindsft.atomic import atomic_output, check_writable
from mindsft.data.batch import step_batch
from mindsft.data.reader import MindRecordBatches
from mindsft.errors import MindsftError
from mindsft.models.config import is_hf_config, load_config
from mindsft.models.loading import load_model
from mindsft.models.loss import nll_sum

MAX_LOSS = 700.0  # from here on perplexity is reported as inf (exp overflows a float near 709.8)


def perplexity(loss: float) -> float:
    """exp(loss), or inf for a loss of MAX_LOSS or more."""
    return math.exp(loss) if loss < MAX_LOSS else math.inf


class LossEvaluator:
    """The evaluation loop of one model, its loss step compiled once and reused by
    every call (evaluation during training calls it again and again).

    `net` is a LlamaForCausalLM, LoRA-wrapped or not; it is not wrapped in another
    Cell (that would rename its parameters). Each call runs it in inference mode
    and gives it its mode back."""

    def __init__(self, net):
        self.net = net
        self.nll = ms.jit(self._nll)

    def _nll(self, tokens, positions, segments, index, targets, chunks):
        h = self.net.hidden(tokens, positions, segments, chunks)  # (B*T, D)
        logits = self.net.selected_logits(h, index)  # (N, V)
        return nll_sum(logits, targets, self.net.config.ignore_token_id)

    def __call__(self, batches, source) -> dict:
        """Token-weighted mean loss over `batches` (numpy {"input_ids", "labels"}:
        int32 (B, T + 1), and "actual_seq_len" for packed rows): {"loss",
        "perplexity", "tokens"}. No target token surviving the loss mask is a one-line
        error naming `source` (the data)."""
        pad, ignore = self.net.config.pad_token_id, self.net.config.ignore_token_id
        was_training = self.net.training
        self.net.set_train(False)
        total, count = 0.0, 0.0
        try:
            for batch in batches:
                s, n = self.nll(*step_batch(batch, pad, ignore).tensors())
                total += float(s.asnumpy())
                count += float(n.asnumpy())
        finally:
            self.net.set_train(was_training)
        if count == 0:
            raise MindsftError(
                f"{source}: no target token survives the loss mask (all labels -100 or pad)"
            )
        loss = total / count
        return {"loss": loss, "perplexity": perplexity(loss), "tokens": int(count)}


def evaluate_loss(net, batches, source) -> dict:
    """`LossEvaluator(net)(batches, source)`: one evaluation pass."""
    return LossEvaluator(net)(batches, source)


def check_seq_length(config_path, config, seq_length, dataset, packed=False) -> None:
    """A MindFormers YAML's seq_length is the run's training length: the dataset must
    match it. An HF config's is max_position_embeddings, a ceiling: shorter is fine,
    except for a packed dataset, whose rows were packed for that one length."""
    ceiling = is_hf_config(config_path) and not packed
    if seq_length > config.seq_length or (not ceiling and seq_length != config.seq_length):
        kind = "packed dataset seq_length" if packed else "seq_length"
        raise MindsftError(
            f"{dataset}: {kind} {seq_length} does not match the config's seq_length "
            f"{config.seq_length} ({config_path})"
        )


def evaluate_checkpoint(config_path, checkpoint, dataset, batch_size=1, num_samples=None) -> dict:
    """Loss, perplexity and tokens of `checkpoint` on the MindRecord `dataset` (its
    first `num_samples` rows when given), with what was evaluated and how long it took."""
    start = time.perf_counter()
    config = load_config(config_path)
    batches = MindRecordBatches(dataset, batch_size, drop_remainder=False, num_samples=num_samples)
    check_seq_length(config_path, config, batches.seq_length, dataset, batches.packed)
    metrics = evaluate_loss(load_model(config, checkpoint), batches, dataset)
    return {
        **metrics,
        "rows": batches.rows,
        "seq_length": batches.seq_length,
        "batch_size": batch_size,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "checkpoint": str(checkpoint),
        "dataset": str(dataset),
        "config": str(config_path),
    }


def evaluate_to_file(config, checkpoint, dataset, output, batch_size=1, num_samples=None) -> dict:
    """`evaluate_checkpoint`, its metrics written to `output` as JSON (atomically) and
    summed up in one printed line."""
    check_writable(output, "file")  # before computing, not after
    metrics = evaluate_checkpoint(config, checkpoint, dataset, batch_size, num_samples)
    with atomic_output(output) as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=2) + "\n")
    print(
        f"loss {metrics['loss']:.6f}  perplexity {metrics['perplexity']:.4f}  tokens "
        f"{metrics['tokens']}  rows {metrics['rows']}  ({metrics['wall_time_s']:.1f} s) -> {output}"
    )
    return metrics

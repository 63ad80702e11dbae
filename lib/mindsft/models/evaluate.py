"""Held-out loss and perplexity of a checkpoint on a qa MindRecord, with the loss
MindFormers trains on (shifted labels, ignore id and pad masked out)."""

import json
import math
import time
from pathlib import Path

import mindspore as ms
from mindspore import nn

from mindsft.atomic import atomic_output
from mindsft.data.reader import MindRecordBatches
from mindsft.errors import MindsftError
from mindsft.models.config import load_config
from mindsft.models.loading import load_model
from mindsft.models.loss import shift_for_causal_lm, token_nll_sum


class CausalLMLoss(nn.Cell):
    """(input_ids, labels) int32 (B, T + 1) -> (masked NLL sum, masked token count)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.pad = model.config.pad_token_id
        self.ignore = model.config.ignore_token_id

    def construct(self, input_ids, labels):
        tokens, targets = shift_for_causal_lm(input_ids, labels)
        return token_nll_sum(self.model(tokens), targets, tokens, self.pad, self.ignore)


def check_seq_length(config_path, config, seq_length, dataset) -> None:
    """A MindFormers YAML's seq_length is the run's training length: the dataset must
    match it. An HF config's is max_position_embeddings, a ceiling: shorter is fine."""
    hf = Path(config_path).is_dir() or Path(config_path).suffix == ".json"
    if seq_length > config.seq_length or (not hf and seq_length != config.seq_length):
        raise MindsftError(
            f"{dataset}: seq_length {seq_length} does not match the config's seq_length "
            f"{config.seq_length} ({config_path})"
        )


def evaluate(config_path, checkpoint, dataset, batch_size=1) -> dict:
    """Mean loss over the masked-in target tokens of every row, and its perplexity."""
    start = time.perf_counter()
    config = load_config(config_path)
    batches = MindRecordBatches(dataset, batch_size, drop_remainder=False)
    check_seq_length(config_path, config, batches.seq_length, dataset)
    loss_cell = CausalLMLoss(load_model(config, checkpoint))
    step = ms.jit(loss_cell.construct)
    total, count = 0.0, 0.0
    for batch in batches:
        nll, n = step(ms.Tensor(batch["input_ids"]), ms.Tensor(batch["labels"]))
        total += float(nll.asnumpy())
        count += float(n.asnumpy())
    if count == 0:
        raise MindsftError(
            f"{dataset}: no target token survives the loss mask (all labels -100 or pad)"
        )
    loss = total / count
    return {
        "loss": loss,
        "perplexity": math.exp(loss) if loss < 700 else math.inf,
        "tokens": int(count),
        "rows": batches.rows,
        "seq_length": batches.seq_length,
        "batch_size": batch_size,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "checkpoint": str(checkpoint),
        "dataset": str(dataset),
        "config": str(config_path),
    }


def write_metrics(metrics: dict, output) -> None:
    """Write the metrics JSON atomically."""
    with atomic_output(output) as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=2) + "\n")

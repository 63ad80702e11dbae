"""The compiled train step: token-weighted gradients, data-parallel all-reduce,
global-norm clipping and the AdamWeightDecay update.

The loss is sum(NLL over unmasked targets) / count, where the sum and the count
are taken over every micro-batch of the step on every worker. Gradients of the
sums are accumulated and all-reduced, then divided by the global count, so a
step over k micro-batches on n workers updates exactly as one batch k*n times
larger would (up to float summation order).

A micro-batch arrives as `StepBatch.tensors()` (data/batch.py): tokens cut to a
bucketed length, rotary positions and sample numbers for packed rows (None for
padded ones), and the trained positions with their targets; the output projection
and the loss run on those positions only.
"""

import mindspore as ms
from mindspore import Parameter, Tensor, ops

from mindsft.models.loss import nll_sum


def squared_sum(g):
    """sum(g^2). A matrix is reduced over its last axis first: MindSpore's CPU
    ReduceSum over every element of a large matrix is several times slower than
    the two steps."""
    sq = ops.square(g)
    return sq.sum(-1).sum() if sq.ndim > 1 else sq.sum()


class TrainStep:
    """Callables `fused(*batch, masks, lr, votes)` (one micro-batch per step) and
    `micro(*batch, masks)` + `apply(lr, votes)` (gradient accumulation), `batch` the
    `StepBatch.tensors()` tuple, passed as separate arguments (a tuple argument is a
    graph constant: the step would recompile for every batch); each step returns
    (loss_sum, token_count, grad_norm, votes) as float32 tensors, `votes` (a float32
    vector: the stop signals this worker has received) summed over the workers, so
    every worker learns the same step that a stop was asked for, with no collective
    of its own.

    `masks` (a tuple of bool tensors from `LoraDropout.masks`, empty without LoRA
    dropout) is written into the `dropout_masks` Parameters (`LoraDropout.parameters`)
    inside the compiled step: a Parameter changed from outside with set_data is not
    seen by a graph already compiled."""

    def __init__(
        self,
        net,
        optimizer,
        params,
        *,
        ignore_index=-100,
        max_grad_norm=None,
        world_size=1,
        accumulate=False,
        dropout_masks=(),
        jit=True,
    ):
        self.net, self.optimizer, self.params = net, optimizer, list(params)
        self.ignore = ignore_index
        self.max_grad_norm = max_grad_norm
        self.dropout_masks = tuple(dropout_masks)
        self.all_reduce = ops.AllReduce() if world_size > 1 else None
        self.grad_fn = ms.value_and_grad(self._loss_sum, None, weights=self.params, has_aux=True)
        self.acc = ms.ParameterTuple(  # gradient sums, only when accumulating
            [
                Parameter(
                    ops.zeros(p.shape, ms.float32), name=f"accu_grads.{p.name}", requires_grad=False
                )
                for p in (self.params if accumulate else [])
            ]
        )
        self.acc_loss = Parameter(Tensor(0.0, ms.float32), name="accu_loss", requires_grad=False)
        self.acc_count = Parameter(Tensor(0.0, ms.float32), name="accu_count", requires_grad=False)
        wrap = ms.jit if jit else (lambda f: f)
        self.fused = wrap(self._fused)
        self.micro = wrap(self._micro)
        self.apply = wrap(self._apply)

    def _loss_sum(self, tokens, positions, segments, index, targets, chunks):
        h = self.net.hidden(tokens, positions, segments, chunks)  # (B*T, D)
        logits = self.net.selected_logits(h, index)  # (N, V)
        return nll_sum(logits, targets, self.ignore)

    def _finish(self, grads, loss_sum, count, lr, votes):
        """All-reduce, normalise by the global token count, clip, update. The loss
        sum, the token count and the stop votes travel in one all-reduce."""
        if self.all_reduce is not None:
            grads = tuple(self.all_reduce(g) for g in grads)
            stats = ops.concat((ops.reshape(loss_sum, (1,)), ops.reshape(count, (1,)), votes))
            stats = self.all_reduce(stats)  # (2 + len(votes),)
            loss_sum, count, votes = stats[0], stats[1], stats[2:]
        # One pass over the gradients instead of two: the norm of g / count is
        # norm(g) / count, so normalising and clipping fold into a single scale.
        inv = 1.0 / ops.maximum(count, 1.0)
        grads = tuple(ops.cast(g, ms.float32) for g in grads)
        norm = ops.sqrt(sum(squared_sum(g) for g in grads)) * inv
        scale = inv
        if self.max_grad_norm is not None:
            scale = inv * (self.max_grad_norm / ops.maximum(norm, self.max_grad_norm))
        grads = tuple(g * scale for g in grads)
        self.optimizer(grads, lr)
        return loss_sum, count, norm, votes

    def _set_masks(self, masks):
        for param, mask in zip(self.dropout_masks, masks):  # noqa: B905 (graph mode has no zip strict=)
            ops.assign(param, mask)

    def _fused(self, tokens, positions, segments, index, targets, chunks, masks, lr, votes):
        self._set_masks(masks)
        (loss_sum, count), grads = self.grad_fn(tokens, positions, segments, index, targets, chunks)
        return self._finish(grads, loss_sum, count, lr, votes)

    def _micro(self, tokens, positions, segments, index, targets, chunks, masks):
        self._set_masks(masks)
        (loss_sum, count), grads = self.grad_fn(tokens, positions, segments, index, targets, chunks)
        for acc, g in zip(self.acc, grads):  # noqa: B905 (graph mode has no zip strict=)
            ops.assign_add(acc, ops.cast(g, ms.float32))
        ops.assign_add(self.acc_loss, loss_sum)
        ops.assign_add(self.acc_count, count)
        return loss_sum

    def _apply(self, lr, votes):
        grads = tuple(a * 1.0 for a in self.acc)
        out = self._finish(grads, self.acc_loss * 1.0, self.acc_count * 1.0, lr, votes)
        for acc in self.acc:
            ops.assign(acc, ops.zeros_like(acc))
        ops.assign(self.acc_loss, ops.zeros_like(self.acc_loss))
        ops.assign(self.acc_count, ops.zeros_like(self.acc_count))
        return out

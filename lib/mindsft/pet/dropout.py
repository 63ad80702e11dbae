"""LoRA dropout masks for a training run: their shapes, their key, the draw, the
background prefetch and how they reach the compiled step.

Masks are drawn on the host by NumPy (SFC64 seeded with a key derived from
(seed, step, micro-batch, rank)), one independent Bernoulli(1 - p) mask per
wrapped module as PEFT draws them, and written into each LoraDense's
`lora_dropout_mask` Parameter inside the compiled step. A resumed run therefore
draws exactly the masks an uninterrupted run would have. (MindSpore 2.10 has no
CPU kernel for its seed/offset random ops, and an integer hash computed in the
graph is much slower than the host draw.)
"""

from concurrent.futures import ThreadPoolExecutor

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from mindsft.pet.lora import LoraDense

KEY_STRIDE = 1000003  # seeds far apart in the key space


def dropout_cells(net: nn.Cell) -> list:
    """The LoraDense cells that apply dropout, in a fixed (cell path) order."""
    return [c for _, c in net.cells_and_names() if isinstance(c, LoraDense) and c.keep < 1.0]


def draw_masks(key: int, shapes: list, keep: float) -> tuple:
    """Bernoulli(keep) bool arrays of `shapes`, a pure function of `key`: NumPy
    draws float32 uniforms (24-bit resolution) and keeps those below `keep`."""
    rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence(int(key))))
    return tuple(rng.random(shape, dtype=np.float32) < np.float32(keep) for shape in shapes)


class LoraDropout:
    """The dropout masks of `net`'s LoRA modules for micro-batches of `batch_size`
    rows of `seq_length` positions.

    `parameters` are the mask Parameters (one (B * length, in) bool per module
    applying dropout, empty without dropout) a compiled step assigns into;
    `masks(step, micro, length)` gives that micro-batch's masks as step inputs, the
    Parameters sized to match, and draws the next micro-batch's in a background
    thread while the step runs (MindSpore releases the GIL). Use it as a context
    manager: the thread stops on leaving, error or not.
    """

    def __init__(
        self,
        net: nn.Cell,
        batch_size: int,
        seq_length: int,
        *,
        seed=0,
        accumulation=1,
        world_size=1,
        rank=0,
    ):
        cells = dropout_cells(net)
        self.batch_size, self.seq_length = batch_size, seq_length
        rows = batch_size * seq_length
        for cell in cells:  # (1, in) at injection: give each mask the batch's rows
            width = cell.lora_dropout_mask.shape[-1]
            cell.lora_dropout_mask.set_data(Tensor(np.ones((rows, width), np.bool_)))
        self.parameters = tuple(cell.lora_dropout_mask for cell in cells)
        self.shapes = [tuple(p.shape) for p in self.parameters]  # drawn: (B * T, in)
        self.keep = cells[0].keep if cells else 1.0
        self.seed, self.accumulation = seed, accumulation
        self.world_size, self.rank = world_size, rank
        self._pool, self._next = None, None

    def key(self, step: int, micro: int) -> int:
        """The draw's key: a function of (seed, 0-based optimizer step, micro-batch,
        rank) only. The next micro-batch's key (or the next step's first) is key +
        world_size."""
        stream = (self.seed * KEY_STRIDE + step) * self.accumulation + micro
        return stream * self.world_size + self.rank

    def draw(self, key: int) -> tuple:
        """The masks of `key` as NumPy bool arrays."""
        return draw_masks(key, self.shapes, self.keep)

    def masks(self, step: int, micro: int, length: int | None = None):
        """The masks of (step, micro) as compiled-step inputs for a micro-batch of
        `length` positions (None: seq_length): an `ms.mutable` tuple of bool tensors
        (a constant tuple would recompile the step each time), or () without
        dropout. Takes the prefetched draw when it is this key's; a resumed or
        reordered run just draws in place."""
        if not self.parameters:
            return ()
        key = self.key(step, micro)
        pending, self._next = self._next, None
        drawn = pending[1].result() if pending and pending[0] == key else self.draw(key)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lora-masks")
        following = key + self.world_size
        self._next = (following, self._pool.submit(self.draw, following))
        return ms.mutable(tuple(Tensor(m) for m in self._cut(drawn, length)))

    def _cut(self, drawn: tuple, length: int | None) -> tuple:
        """`drawn` masks cut to `length` positions, the mask Parameters sized to match:
        masks are drawn for whole rows, (B * seq_length, in), and each row keeps its
        first `length` positions' masks, (B * length, in), so a position's mask does
        not depend on the cut."""
        length = self.seq_length if length is None else length
        rows, seq = self.batch_size, self.seq_length
        cut = []
        for param, mask in zip(self.parameters, drawn, strict=True):
            width = mask.shape[-1]
            if param.shape[0] != rows * length:
                param.set_data(Tensor(np.ones((rows * length, width), np.bool_)))
            if length != seq:  # (B * T, in) -> (B, T, in) -> (B, length, in) -> (B * length, in)
                mask = mask.reshape(rows, seq, width)[:, :length].reshape(-1, width)
            cut.append(mask)
        return tuple(cut)

    def close(self) -> None:
        """Stop the prefetch thread (a later `masks` starts a new one)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        self._pool, self._next = None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

"""From a batch of qa MindRecord rows to what the compiled step computes on: only
the positions a loss reaches, in a few static shapes.

- The shift (MindFormers'): tokens = input_ids[:, :-1], targets = labels[:, 1:]; a
  target is trained when it is not IGNORE and its input token is not the pad id.
- Packed rows (data/packing.py): every token's sample number (attention stays within
  a sample) and position within its sample (rotary positions restart); the last
  token of a sample gets no target, which would be the next sample's first token.
  When every sample of the batch starts at most a quarter row before any of its
  tokens' quarter, attention runs over pairs of quarters (`chunks` = 4): each
  quarter's queries over that quarter's and the previous one's keys, T^2/2 scores
  for a row of T, where two query halves take 3T^2/4.
- Trim (padded rows): attention is causal, so positions after the last trained
  target change nothing the loss sees; the batch is cut after that target, to a
  length from a few buckets (multiples of seq_length / 8, at least 128), so the step
  compiles for a few lengths, not one per batch. Packed rows are full: they keep
  seq_length (one length fewer to compile).
- Select: the output projection and the loss run on the trained positions only,
  gathered by index. The index is padded to a bucket (multiples of 1/8 of the
  batch's positions, at least 128), its padding slots targeted at IGNORE.
"""

from dataclasses import dataclass

import mindspore as ms
import numpy as np

from mindsft.data.packing import BOUNDARIES, sample_positions
from mindsft.models.loss import shift_for_causal_lm

BUCKETS = 8  # a batch's length and its trained positions each take one of about this many sizes
CHUNKS = 4  # packed rows whose samples fit attend over pairs of quarter rows
MIN_CHUNK = 64  # shortest chunk worth cutting a row into
MIN_BUCKET = 128  # smallest step between sizes: below it, cutting saves less than a compile costs


def bucket(n: int, limit: int) -> int:
    """The smallest multiple of max(limit / BUCKETS, MIN_BUCKET) that holds `n`
    (at least one step), and never more than `limit`."""
    step = max(-(-limit // BUCKETS), MIN_BUCKET)
    return min(limit, max(step, -(-n // step) * step))


@dataclass
class StepBatch:
    """One micro-batch as the step takes it (numpy; `tensors()` for the step)."""

    tokens: np.ndarray
    """int32 (B, T): the input tokens, cut to the bucketed length T."""
    positions: np.ndarray | None
    """int32 (B, T): rotary position of each token within its sample (packed rows); None:
    0..T-1 in every row."""
    segments: np.ndarray | None
    """int32 (B, T): sample number of each token (packed rows); None: one sample per row."""
    index: np.ndarray
    """int32 (N,): flat positions (b * T + t) with a trained target, padded with 0."""
    targets: np.ndarray
    """int32 (N,): their targets; IGNORE in the padding slots."""
    trained: int
    """Trained targets (entries of `index` before the padding)."""
    chunks: int = 0
    """Packed rows: attention over pairs of this many chunks (0: over the whole row)."""

    def tensors(self) -> tuple:
        """(tokens, positions, segments, index, targets) as tensors (None stays None),
        then `chunks` (an int: the step compiles once per value)."""
        fields = (self.tokens, self.positions, self.segments, self.index, self.targets)
        return (*(None if a is None else ms.Tensor(a) for a in fields), self.chunks)


def step_batch(batch: dict, pad_id: int, ignore: int) -> StepBatch:
    """The StepBatch of a reader batch {"input_ids", "labels"(, "actual_seq_len")}."""
    tokens, targets = shift_for_causal_lm(batch["input_ids"], batch["labels"])  # (B, S)
    rows, seq = tokens.shape
    trained = (targets != ignore) & (tokens != pad_id)
    positions = segments = None
    chunks = 0
    if BOUNDARIES in batch:
        segments, positions, last = _packed_rows(batch[BOUNDARIES], seq)
        trained &= ~last
        length = seq
        chunks = _chunks(batch[BOUNDARIES], positions)
    else:
        used = np.flatnonzero(trained.any(axis=0))
        length = bucket(int(used[-1]) + 1 if len(used) else 0, seq)
    flat = np.flatnonzero(trained[:, :length])  # b * length + t
    size = bucket(len(flat), rows * length)
    index = np.zeros(size, np.int32)
    index[: len(flat)] = flat
    picked = np.full(size, ignore, np.int32)
    picked[: len(flat)] = targets[:, :length].reshape(-1)[flat]
    tokens, positions, segments = (
        None if a is None else np.ascontiguousarray(a[:, :length])
        for a in (tokens, positions, segments)
    )
    return StepBatch(tokens, positions, segments, index, picked, len(flat), chunks)


def _chunks(ends, positions: np.ndarray) -> int:
    """CHUNKS when every real token's sample starts no earlier than the chunk before
    the token's (checked at each chunk's first token: its position within its sample
    is at most a chunk); else 0."""
    rows, seq = positions.shape
    size = seq // CHUNKS
    if seq % CHUNKS or size < MIN_CHUNK:
        return 0
    firsts = np.arange(size, seq, size)  # first token of each chunk after the first
    real = firsts[None, :] < np.array([row_ends[-1] for row_ends in ends])[:, None]
    return CHUNKS if np.all(positions[:, firsts][real] <= size) else 0


def _packed_rows(ends: np.ndarray, seq: int) -> tuple:
    """Sample numbers, positions within samples, and samples' last tokens of the first
    `seq` positions of packed rows with sample `ends`: (B, seq) each."""
    parts = [sample_positions(row_ends, seq) for row_ends in ends]
    return tuple(np.stack([p[k] for p in parts]) for k in range(3))

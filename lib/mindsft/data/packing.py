"""Sequence packing of qa rows, and the format of a packed qa MindRecord.

A packed qa MindRecord has three int32 columns:
- `input_ids`, `labels`: seq_length + 1 long. Whole samples, one after another,
  unshifted - each sample is the row `preprocess` builds without packing, up to its
  last token (BOS ... EOS, or cut at seq_length + 1 tokens exactly as without
  packing) - then the pad id (input_ids) and IGNORE (labels) to the end of the row.
- `actual_seq_len`: one entry per sample, the cumulative end offsets of the samples
  in the row: samples of 4 and 5 tokens give [4, 9]. No leading 0; the last entry
  is the row's number of real tokens. MindFormers' column name and format
  (`PackingHandler`, `mindformers/dataset/handler/packing_handler.py`).

Samples go into rows greedily in input order (next-fit, as MindFormers packs: a
sample that does not fit closes the row); they are never split, reordered or
shuffled, so the same input gives the same file and no seed is involved. Every
sample's first label is IGNORE (its BOS), so no target crosses a boundary when
training shifts labels; the training layout (data/batch.py) attends within each
sample, restarts positions at each sample and drops the target of each sample's
last token.

Where MindFormers differs: its packed rows are seq_length long with labels already
shifted per sample, which trains each sample's last token towards the pad id; and
it drops a sample longer than a row instead of truncating it."""

import numpy as np

from mindsft.data.mindrecord_writer import INT32_COLUMN, pack_row
from mindsft.errors import MindsftError

IGNORE_INDEX = -100
BOUNDARIES = "actual_seq_len"
SCHEMA = {name: INT32_COLUMN for name in ("input_ids", "labels", BOUNDARIES)}


def sample_lengths(input_ids: np.ndarray, pad_id: int) -> np.ndarray:
    """Real length of each unpacked qa row (n, length): up to its last non-pad token
    (every row ends in EOS, unless it was cut at the full length)."""
    real = input_ids != pad_id
    last = input_ids.shape[1] - np.argmax(real[:, ::-1], axis=1)
    return np.where(real.any(axis=1), last, 0)


class Packer:
    """Whole samples into rows of `length` tokens, next-fit in input order.

    `add` takes unpacked qa rows and returns the packed rows it closed, as blobs for
    `MindRecordWriter.write_rows`; `finish` closes the last one. `rows`, `samples`
    and `tokens` count the rows closed, the samples and the real tokens in them."""

    def __init__(self, length: int, pad_id: int):
        self.length, self.pad_id = length, pad_id
        self.open, self.used = [], 0  # the open row: (input_ids, labels) per sample
        self.rows, self.samples, self.tokens = 0, 0, 0

    def add(self, input_ids: np.ndarray, labels: np.ndarray) -> list:
        """Pack unpacked rows, int32 (n, length) each, in order; the closed rows' blobs."""
        closed = []
        for ids, lab, n in zip(
            input_ids, labels, sample_lengths(input_ids, self.pad_id), strict=True
        ):
            if self.used + n > self.length:
                closed.append(self._close())
            self.open.append((ids[:n], lab[:n]))
            self.used += n
        return closed

    def finish(self) -> list:
        """The blob of the row still open, if any."""
        return [self._close()] if self.open else []

    def summary(self) -> dict:
        """What the stats file adds for a packed MindRecord: packing efficiency is
        real tokens over row tokens."""
        efficiency = self.tokens / max(self.rows * self.length, 1)
        return {
            "packing": True,
            "samples": self.samples,
            "packing_efficiency": round(efficiency, 4),
        }

    def _close(self) -> bytes:
        input_ids = np.full(self.length, self.pad_id, np.int32)
        labels = np.full(self.length, IGNORE_INDEX, np.int32)
        ends = np.cumsum([len(ids) for ids, _ in self.open]).astype(np.int32)
        for (ids, lab), end in zip(self.open, ends, strict=True):
            input_ids[end - len(ids) : end] = ids
            labels[end - len(ids) : end] = lab
            labels[end - len(ids)] = IGNORE_INDEX  # no target crosses into a sample
        self.rows += 1
        self.samples += len(ends)
        self.tokens += int(ends[-1])
        self.open, self.used = [], 0
        return pack_row({"input_ids": input_ids, "labels": labels, BOUNDARIES: ends})


def check_packed_row(ends: np.ndarray, labels: np.ndarray, where: str) -> None:
    """A packed row's boundaries must add up: cumulative ends, strictly increasing,
    the first above 0, the last within the row, and no label after the last one."""
    length = len(labels)
    ends = np.asarray(ends)
    if len(ends) == 0 or ends[0] <= 0 or np.any(np.diff(ends) <= 0) or ends[-1] > length:
        shown = ends.tolist() if len(ends) <= 8 else [*ends[:4].tolist(), "...", int(ends[-1])]
        raise MindsftError(
            f"{where}: {BOUNDARIES} {shown} are not increasing sample ends within the row's "
            f"{length} tokens"
        )
    if np.any(labels[ends[-1] :] != IGNORE_INDEX):
        raise MindsftError(
            f"{where}: labels after the last sample end ({int(ends[-1])}) are not "
            f"{IGNORE_INDEX}; the boundaries do not cover the row's samples"
        )


def sample_positions(ends: np.ndarray, length: int) -> tuple:
    """For the first `length` positions of a packed row with sample `ends`: (sample
    number, position within the sample, last token of a sample), int32, int32, bool
    arrays of `length`. Positions after the last end form one more sample."""
    ends = np.asarray(ends, dtype=np.int64)
    t = np.arange(length)
    segment = np.searchsorted(ends, t, side="right")
    starts = np.concatenate([[0], ends])
    last = np.zeros(length, bool)
    last[ends[ends <= length] - 1] = True
    return segment.astype(np.int32), (t - starts[segment]).astype(np.int32), last

"""step_batch: the shift, the cut to a few lengths, the trained positions gathered to
a few sizes, and packed rows' sample numbers, positions and attention layout."""

import numpy as np
from mindsft.data.batch import bucket, step_batch

IGNORE = -100


def test_sizes_are_multiples_of_an_eighth_of_the_limit_and_at_least_128():
    assert [bucket(n, 2048) for n in (0, 1, 256, 257, 2000, 5000)] == [
        256,
        256,
        256,
        512,
        2048,
        2048,
    ]
    assert [bucket(n, 512) for n in (0, 129, 300)] == [128, 256, 384]
    assert bucket(20, 32) == 32  # never more than the limit


def padded(lengths, seq=512):
    ids = np.zeros((len(lengths), seq + 1), np.int32)
    labels = np.full_like(ids, IGNORE)
    for k, n in enumerate(lengths):
        ids[k, :n] = 7
        labels[k, 2:n] = 7
    return {"input_ids": ids, "labels": labels}


def test_padded_rows_are_cut_after_their_last_target_and_targets_gathered():
    batch = padded([100, 200])
    batch["input_ids"][1, 50] = 0  # a pad id inside a row: its target is not trained
    layout = step_batch(batch, 0, IGNORE)
    assert layout.tokens.shape == (2, 256) and layout.positions is None and layout.chunks == 0
    # targets labels[t + 1] for t = 1..n-2, but the one whose input is the pad id
    expected = list(range(1, 99)) + [256 + t for t in range(1, 199) if t != 50]
    assert layout.trained == len(expected) == 295 and len(layout.index) == 384
    assert layout.index[:295].tolist() == expected and (layout.index[295:] == 0).all()
    assert (layout.targets[:295] == 7).all() and (layout.targets[295:] == IGNORE).all()


def packed(rows, seq=512):
    """Packed rows from their samples' lengths; labels on all but each sample's BOS."""
    ids = np.full((len(rows), seq + 1), 0, np.int32)
    labels = np.full_like(ids, IGNORE)
    ends = np.empty(len(rows), dtype=object)
    for r, lengths in enumerate(rows):
        ends[r] = np.cumsum(lengths).astype(np.int32)
        ids[r, : ends[r][-1]] = 7
        labels[r, : ends[r][-1]] = 7
        labels[r, ends[r] - np.asarray(lengths)] = IGNORE
    return {"input_ids": ids, "labels": labels, "actual_seq_len": ends}


def test_packed_rows_number_samples_restart_positions_and_drop_crossing_targets():
    layout = step_batch(packed([[3, 4, 100], [513]]), 0, IGNORE)
    assert layout.tokens.shape == (2, 512)  # packed rows are not cut
    assert layout.segments[0, :9].tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert layout.positions[0, :9].tolist() == [0, 1, 2, 0, 1, 2, 3, 0, 1]
    assert (layout.segments[0, 107:] == 3).all()  # the padding after the last sample
    # row 0: targets of tokens 0, 1 | 3, 4, 5 | 7..105; the last token of each sample has none
    first = [0, 1, 3, 4, 5, *range(7, 106)]
    assert layout.index[: len(first)].tolist() == first
    assert layout.trained == len(first) + 512  # row 1: one sample filling the row, 512 targets


def test_attention_takes_pairs_of_quarters_only_when_every_sample_fits():
    # 128-token quarters: a sample may start at most a quarter before a quarter's first token
    assert step_batch(packed([[120, 130, 130], [129, 129]]), 0, IGNORE).chunks == 4
    # the 300-token sample starts at 0: at token 256 it started two quarters back
    assert step_batch(packed([[300, 100], [10]]), 0, IGNORE).chunks == 0
    # padding after the last sample may span quarters: it trains nothing
    assert step_batch(packed([[20]]), 0, IGNORE).chunks == 4
    assert step_batch(packed([[20]], seq=128), 0, IGNORE).chunks == 0  # quarters under 64

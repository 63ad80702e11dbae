"""Does a step fit a device, and how far can batch_size and seq_length go."""

from mindsft.plan.memory import Step, plan_step

BATCH_LIMIT = 1 << 16  # searched up to this many rows per device
SEQ_LIMIT = 1 << 20  # and up to this many positions


def peak(step: Step) -> int:
    """Per-device peak bytes of `step`."""
    return plan_step(step).total


def _largest(fits, limit: int) -> int:
    """The largest n in [1, limit] with fits(n), assuming fits is monotone; 0 if none."""
    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= limit and fits(high):
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def largest_batch(step: Step, budget: int) -> int:
    """The largest per-device batch_size whose step fits `budget` bytes (0: not even 1)."""
    return _largest(lambda b: peak(step.with_(batch_size=b)) <= budget, BATCH_LIMIT)


def largest_seq(step: Step, budget: int) -> int:
    """The largest even seq_length whose step fits `budget` bytes (0: none)."""
    return 2 * _largest(lambda h: peak(step.with_(seq_length=2 * h)) <= budget, SEQ_LIMIT // 2)

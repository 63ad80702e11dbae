"""Stopping a run at a step boundary on SIGTERM/SIGINT (signals.StopSignals): every
worker's votes, and the stop itself, with a checkpoint of the step just done."""

import signal

import numpy as np

from mindsft.errors import MindsftError
from mindsft.train.launch import all_sum
from mindsft.train.signals import Stopped


def stop_votes(stop) -> np.ndarray:
    """A worker's stop votes, [SIGTERM received, SIGINT received] (float32), from
    its `stop` (a signals.StopSignals, or None: never): summed over the workers
    inside the train step."""
    got = stop.signum if stop is not None else None
    return np.array([got == signal.SIGTERM, got == signal.SIGINT], np.float32)


def stop_if_voted(votes, where: str, world: int, last_checkpoint, save=None) -> None:
    """Given the stop `votes` of every worker (the same on all of them; SIGTERM
    first), at the step boundary `where`: call `save` (this step's checkpoint; None:
    there is no step to save), wait for every rank to have written its own, and
    raise Stopped. Without votes, return."""
    if not votes.any():
        return
    signum = signal.SIGTERM if votes[0] else signal.SIGINT
    if save is None:
        newest = f"the newest is {last_checkpoint}" if last_checkpoint else "none"
        raise Stopped(signum, f"{where}: no checkpoint written ({newest})")
    try:
        detail = f"{where}; checkpoint written: {save()}"
    except MindsftError as exc:
        detail = f"{where}; no checkpoint written: {exc}"
    all_sum(np.zeros(1, np.float32), world)  # every rank has written its own
    raise Stopped(signum, detail)

"""The parts the Trainer calls, on their own: when evaluation is due
(train.evaluation), the loss log a resumed run continues (train.records), and
the stop at a step boundary (train.stop)."""

import json
import os
import signal

import numpy as np
import pytest
from mindsft.errors import MindsftError
from mindsft.train.config import RunConfig
from mindsft.train.evaluation import PeriodicEval
from mindsft.train.records import append_record, loss_log
from mindsft.train.signals import Stopped, StopSignals
from mindsft.train.stop import stop_if_voted, stop_votes


def test_evaluation_is_due_every_n_steps_and_after_every_kth_epoch():
    run = RunConfig(eval_step_interval=3, eval_epoch_interval=2)
    due = PeriodicEval(batches=[], path="eval.mindrecord", run=run, steps_per_epoch=4).due
    # steps 1..8 over two epochs of 4: step 3 and 6 by step, step 8 ends epoch 2
    got = [due(epoch * 4 + s, epoch, s) for epoch in (0, 1) for s in range(1, 5)]
    assert got == [False, False, True, False, False, True, False, True]
    never = PeriodicEval(batches=None, path="", run=run, steps_per_epoch=4)
    assert not never.due(3, 0, 3)  # no eval batches: never (other ranks, no do_eval)


def test_a_resumed_loss_log_keeps_the_records_of_the_steps_done(tmp_path):
    with loss_log(tmp_path, rank=0, done=0) as log:
        for step in (1, 2, 3):
            append_record(log, {"step": step, "loss": 1.0 / step})
    with loss_log(tmp_path, rank=0, done=2) as log:  # resumed after step 2
        append_record(log, {"step": 3, "loss": 0.5})
    lines = (tmp_path / "loss.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    assert json.loads(lines[-1])["loss"] == 0.5
    with loss_log(tmp_path / "other", rank=1, done=0) as log:
        assert log is None and not (tmp_path / "other").exists()  # rank 0 writes it


def test_votes_stop_with_a_checkpoint_of_the_step_or_say_there_is_none():
    assert stop_votes(None).tolist() == [0.0, 0.0]
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # a Ctrl+C, recorded instead of raised
        votes = stop_votes(stop)
    assert votes.tolist() == [0.0, 1.0] and votes.dtype == np.float32
    stop_if_voted(np.zeros(2, np.float32), "after step 1 of 4", 1, None)  # no votes: go on
    with pytest.raises(Stopped, match="SIGTERM after step 2 of 4; checkpoint written: c.ckpt"):
        stop_if_voted(np.array([1, 1], np.float32), "after step 2 of 4", 1, None, lambda: "c.ckpt")
    with pytest.raises(Stopped, match=r"after step 0 of 4: no checkpoint written \(none\)"):
        stop_if_voted(votes, "after step 0 of 4", 1, None)

    def fails():
        raise MindsftError("step 3: loss is nan")

    with pytest.raises(Stopped, match="no checkpoint written: step 3: loss is nan"):
        stop_if_voted(votes, "after step 3 of 4", 1, "a.ckpt", fails)

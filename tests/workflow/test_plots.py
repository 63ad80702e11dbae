"""The report's loss plot: training steps as a curve, eval records as points."""

import json

import pytest
from mindsft.errors import MindsftError
from mindsft.workflow.plots import loss_figure, plot_loss

RECORDS = [
    {"step": 1, "epoch": 1, "loss": 3.0, "lr": 1e-3},
    {"step": 2, "epoch": 1, "loss": 2.5, "lr": 1e-3},
    {"step": 2, "epoch": 1, "eval_loss": 2.8, "eval_perplexity": 16.4, "eval_tokens": 9},
    {"step": 3, "epoch": 2, "loss": 2.0, "lr": 5e-4},
    {"step": 3, "epoch": 2, "eval_loss": 2.6, "eval_perplexity": 13.5, "eval_tokens": 9},
]


def test_eval_records_are_drawn_beside_the_training_loss():
    fig = loss_figure(RECORDS, "run")
    loss_axis = fig.axes[0]
    lines = {line.get_label(): line for line in loss_axis.get_lines()}
    assert list(lines["training loss"].get_xdata()) == [1, 2, 3]
    assert list(lines["training loss"].get_ydata()) == [3.0, 2.5, 2.0]
    assert list(lines["eval loss"].get_xdata()) == [2, 3]
    assert list(lines["eval loss"].get_ydata()) == [2.8, 2.6]
    assert loss_axis.get_title() == "run: training loss and eval loss"


def test_plot_loss_writes_the_figure_and_refuses_a_log_without_steps(tmp_path):
    log = tmp_path / "loss.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    plot_loss(log, tmp_path / "loss.png", "run")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    log.write_text(json.dumps(RECORDS[2]) + "\n")
    with pytest.raises(MindsftError, match="loss.jsonl: no training-step records"):
        plot_loss(log, tmp_path / "none.png", "run")
    assert not (tmp_path / "none.png").exists()

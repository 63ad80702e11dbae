"""TensorBoard event files of a run, as MindFormers writes them.

When the finetune YAML sets MindFormers' `tensorboard.tensorboard_dir`, rank 0
writes event files there with tensorboardX (MindFormers' own writer), one point
per optimizer step for each of

    loss, learning-rate, grad-norm     (MindFormers' MFLossMonitor tags)
    tokens-per-second                  (the step's tokens over its wall time)

and whatever else a hook hands to `scalar` (eval loss during training, under
EVAL_LOSS). With
`log_timers_to_tensorboard: True` also `iteration-time` (seconds per step); with
`log_loss_scale_to_tensorboard: True` also `loss-scale` (always 1.0: mindsft does
no loss scaling). A resumed run hides the events of the steps it runs again.
"""

from contextlib import contextmanager
from dataclasses import dataclass, fields

from mindsft.errors import MindsftError

# loss-log record key -> TensorBoard tag
STEP_TAGS = {
    "loss": "loss",
    "lr": "learning-rate",
    "grad_norm": "grad-norm",
    "tokens_per_s": "tokens-per-second",
}
EVAL_LOSS = "eval-loss"  # the tag of the loss evaluated during training


@dataclass
class TensorBoardConfig:
    """MindFormers' `tensorboard:` block."""

    tensorboard_dir: str
    """Folder of the event files (relative to the working directory)."""
    tensorboard_queue_size: int = 10
    """Events held in memory before they are written (tensorboardX's max_queue)."""
    log_loss_scale_to_tensorboard: bool = False
    """Also write `loss-scale`."""
    log_timers_to_tensorboard: bool = False
    """Also write `iteration-time`."""

    @classmethod
    def from_yaml(cls, block, source: str) -> "TensorBoardConfig | None":
        """The block as read from the YAML; None when it sets no tensorboard_dir."""
        if block is None:
            return None
        if not isinstance(block, dict):
            raise MindsftError(f"{source}: tensorboard must be a mapping of its settings")
        known = [f.name for f in fields(cls)]
        for key, value in block.items():
            if key not in known:
                raise MindsftError(
                    f"{source}: tensorboard.{key} is not a tensorboard setting "
                    f"(known: {', '.join(known)})"
                )
            want = cls.__annotations__[key]
            if value is not None and type(value) is not want:
                raise MindsftError(
                    f"{source}: tensorboard.{key} is {value!r}, expected {want.__name__}"
                )
        if not block.get("tensorboard_dir"):
            return None
        config = cls(**{k: v for k, v in block.items() if v is not None})
        if config.tensorboard_queue_size < 1:
            raise MindsftError(f"{source}: tensorboard.tensorboard_queue_size must be at least 1")
        return config


class TensorBoardWriter:
    """Scalars into event files; `scalar` is what every hook calls."""

    def __init__(self, config: TensorBoardConfig, purge_step=None):
        from tensorboardX import SummaryWriter

        self.config = config
        try:
            self._writer = SummaryWriter(
                logdir=config.tensorboard_dir,
                max_queue=config.tensorboard_queue_size,
                purge_step=purge_step,
            )
        except OSError as exc:
            raise MindsftError(
                f"{config.tensorboard_dir}: cannot write TensorBoard events ({exc.strerror})"
            ) from None

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._writer.add_scalar(tag, value, global_step=step)

    def step(self, record: dict) -> None:
        """One optimizer step's loss-log record."""
        for key, tag in STEP_TAGS.items():
            self.scalar(tag, record[key], record["step"])
        if self.config.log_timers_to_tensorboard:
            self.scalar("iteration-time", record["tokens"] / record["tokens_per_s"], record["step"])
        if self.config.log_loss_scale_to_tensorboard:
            self.scalar("loss-scale", 1.0, record["step"])

    def close(self) -> None:
        self._writer.close()


class NoWriter:
    """What ranks other than 0, and runs without a tensorboard_dir, write to."""

    def scalar(self, tag: str, value: float, step: int) -> None:
        pass

    def step(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


NO_WRITER = NoWriter()


@contextmanager
def open_writer(config: "TensorBoardConfig | None", rank: int, done: int = 0):
    """A TensorBoardWriter on rank 0 when `config` is set, else NO_WRITER. `done`:
    optimizer steps already run; events of later steps from an earlier attempt are
    hidden (tensorboardX's purge_step)."""
    if config is None or rank != 0:
        yield NO_WRITER
        return
    writer = TensorBoardWriter(config, purge_step=done + 1 if done else None)
    try:
        yield writer
    finally:
        writer.close()

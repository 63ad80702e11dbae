"""`mindsft finetune` (run_mindformer.py --run_mode finetune) and `mindsft merge-lora`
(transform_ckpt_lora.py)."""

from pathlib import Path

from mindsft.cli import str2bool
from mindsft.train import launch
from mindsft.train.config import load_finetune_config

# MindFormers' command-line overrides of the YAML: flag -> TrainConfig field
OVERRIDES = ("epochs", "batch_size", "num_samples", "seed")


def _child_argv(args) -> list:
    """The finetune arguments every msrun worker gets (launcher flags dropped)."""
    argv = ["finetune"]
    for key in ("config", "train_dataset_dir", "load_checkpoint", "output_dir", *OVERRIDES):
        if getattr(args, key) is not None:
            argv += [f"--{key}", str(getattr(args, key))]
    argv += ["--use_parallel", "True", "--resume_training", str(bool(args.resume_training))]
    return argv


def run_finetune(args) -> int:
    from mindsft.train.trainer import RunPaths, Trainer

    cfg = load_finetune_config(args.config)
    for key in OVERRIDES:
        if getattr(args, key) is not None:
            setattr(cfg.train, key, getattr(args, key))
    if launch.needs_msrun(args.use_parallel, args.worker_num):
        return launch.relaunch(_child_argv(args), args, args.output_dir)
    rank, world = launch.init_workers(args.use_parallel, args.worker_num)
    trainer = Trainer(
        cfg, RunPaths(args.train_dataset_dir, args.load_checkpoint, args.output_dir), rank, world
    )
    trainer.setup()
    if args.resume_training:
        trainer.resume()
    trainer.train()
    return 0


def run_merge(args) -> int:
    from mindsft.train.merge import merge_lora_checkpoint

    cfg = load_finetune_config(args.config)
    merge_lora_checkpoint(cfg, args.base_checkpoint, args.lora_checkpoint, args.output_path)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help="full or LoRA fine-tuning from a MindFormers-style YAML"
    )
    p.add_argument("--config", required=True, help="finetune YAML (MindFormers shape)")
    p.add_argument(
        "--train_dataset_dir", required=True, help="qa MindRecord from `mindsft preprocess`"
    )
    p.add_argument("--load_checkpoint", required=True, help="base checkpoint (MindFormers names)")
    p.add_argument(
        "--output_dir", required=True, type=Path, help="checkpoints, loss.jsonl, msrun_log/"
    )
    p.add_argument("--use_parallel", type=str2bool, default=False, help="data parallel under msrun")
    p.add_argument(
        "--resume_training",
        type=str2bool,
        nargs="?",
        const=True,
        default=False,
        help="continue from the newest checkpoint in output_dir",
    )
    p.add_argument("--epochs", type=int, help="override runner_config.epochs")
    p.add_argument("--batch_size", type=int, help="override runner_config.batch_size (per worker)")
    p.add_argument("--num_samples", type=int, help="use only this many rows per epoch")
    p.add_argument("--seed", type=int, help="override seed")
    g = p.add_argument_group("msrun (with --use_parallel True)")
    g.add_argument("--worker_num", type=int, help="total workers; mindsft starts msrun when > 1")
    g.add_argument(
        "--local_worker_num", type=int, help="workers on this node (default: worker_num)"
    )
    g.add_argument("--master_addr", help="scheduler address for multi-node runs")
    g.add_argument(
        "--master_port", type=int, default=8118, help="scheduler port (msrun's default 8118)"
    )
    g.add_argument("--node_rank", type=int, help="this node's rank in a multi-node run")
    p.set_defaults(func=run_finetune)

    m = subparsers.add_parser("merge-lora", help="fold LoRA matrices into the base weights")
    m.add_argument(
        "--config", required=True, help="the finetune YAML (its pet_config gives alpha/rank)"
    )
    m.add_argument(
        "--base_checkpoint", required=True, help="base checkpoint the LoRA run started from"
    )
    m.add_argument("--lora_checkpoint", required=True, help="a LoRA checkpoint, or a run/train dir")
    m.add_argument("--output_path", required=True, help="merged checkpoint (base names and dtype)")
    m.set_defaults(func=run_merge)

"""`mindsft finetune` (run_mindformer.py --run_mode finetune: `mindsft run`'s
finetune mode, its flags a subset) and `mindsft merge-lora` (transform_ckpt_lora.py)."""

from pathlib import Path

from mindsft.cli import str2bool
from mindsft.train.config import load_finetune_config
from mindsft.train.run import add_msrun_flags, run_command


def run_merge(args) -> int:
    from mindsft.train.merge import merge_lora_checkpoint

    cfg = load_finetune_config(args.config)
    merge_lora_checkpoint(cfg, args.base_checkpoint, args.lora_checkpoint, args.output_path)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="full or LoRA fine-tuning from a MindFormers-style YAML (`run --run_mode finetune`)",
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
    add_msrun_flags(p)
    p.set_defaults(func=run_command, run_mode="finetune")

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

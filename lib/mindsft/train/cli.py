"""`mindsft finetune` (run_mindformer.py --run_mode finetune: `mindsft run`'s
finetune mode, its flags a subset), `mindsft merge-lora` (transform_ckpt_lora.py)
and `mindsft msrun-launcher` (scripts/msrun_launcher.sh)."""

from pathlib import Path

from mindsft.cli import str2bool
from mindsft.train import msrun_launcher
from mindsft.train.config import load_finetune_config
from mindsft.train.run import add_memory_flags, add_msrun_flags, run_command


def run_merge(args) -> int:
    from mindsft.train.merge import merge_lora_checkpoint

    cfg = load_finetune_config(args.config)
    merge_lora_checkpoint(cfg, args.base_checkpoint, args.lora_checkpoint, args.output_path)
    return 0


def register(subparsers) -> None:
    _register_finetune(subparsers)
    _register_merge(subparsers)
    msrun_launcher.register(subparsers)


def _register_finetune(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="full or LoRA fine-tuning from a MindFormers-style YAML (`run --run_mode finetune`)",
        description="Fine-tune a Llama from a MindFormers finetune YAML (full, or LoRA with "
        "model_config.pet_config) on a qa MindRecord, as run_mindformer.py --run_mode "
        "finetune does; checkpoints go to OUTPUT_DIR/checkpoint/rank_*/, the per-step loss "
        "to OUTPUT_DIR/loss.jsonl. The command-line flags override the YAML.",
    )
    p.add_argument("--config", required=True, help="finetune YAML (MindFormers shape)")
    p.add_argument(
        "--train_dataset_dir", required=True, help="qa MindRecord from `mindsft preprocess`"
    )
    p.add_argument(
        "--load_checkpoint",
        required=True,
        help="weights to start from: a checkpoint file, MindFormers' rank_* folders, or a "
        "folder of .ckpt files loaded together (base + LoRA)",
    )
    p.add_argument(
        "--output_dir", required=True, type=Path, help="checkpoints, loss.jsonl, msrun_log/"
    )
    p.add_argument(
        "--use_parallel",
        type=str2bool,
        default=False,
        help="True: data parallel, one worker per device under msrun (default: %(default)s)",
    )
    p.add_argument(
        "--resume_training",
        type=str2bool,
        nargs="?",
        const=True,
        default=False,
        help="continue from the newest checkpoint in output_dir that every rank holds and "
        "verifies, if the run's settings allow (default: %(default)s)",
    )
    p.add_argument("--epochs", type=int, help="passes over the data (default: the YAML's)")
    p.add_argument(
        "--batch_size", type=int, help="rows per worker and micro-batch (default: the YAML's)"
    )
    p.add_argument(
        "--num_samples", type=int, help="use only this many rows per epoch (default: all)"
    )
    p.add_argument(
        "--seed", type=int, help="seeds LoRA, shuffling and dropout (default: the YAML's)"
    )
    p.add_argument(
        "--auto_trans_ckpt",
        type=str2bool,
        help="reshard --load_checkpoint for this run: pure data parallel only "
        "(default: the YAML's)",
    )
    add_memory_flags(p)
    add_msrun_flags(p)
    p.set_defaults(func=run_command, run_mode="finetune")


def _register_merge(subparsers) -> None:
    m = subparsers.add_parser(
        "merge-lora",
        help="fold LoRA matrices into the base weights",
        description="Write base + (lora_alpha / lora_rank) B @ A as one checkpoint with the "
        "base's names and dtypes, as MindFormers' transform_ckpt_lora.py does; for a full "
        "fine-tuning run, rank 0's weights after checking the other ranks hold the same.",
    )
    m.add_argument(
        "--config", required=True, help="the finetune YAML (its pet_config gives alpha/rank)"
    )
    m.add_argument(
        "--base_checkpoint", required=True, help="base checkpoint the LoRA run started from"
    )
    m.add_argument("--lora_checkpoint", required=True, help="a LoRA checkpoint, or a run/train dir")
    m.add_argument("--output_path", required=True, help="merged checkpoint (base names and dtype)")
    m.set_defaults(func=run_merge)

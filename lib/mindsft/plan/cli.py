"""`mindsft plan`: the per-device memory of a finetune YAML, before launching it."""

import json

from mindsft.atomic import atomic_output, check_writable
from mindsft.cli import str2bool


def run(args) -> int:
    from mindsft.plan.planner import make_plan
    from mindsft.plan.report import format_plan, plan_json

    if args.output is not None:
        check_writable(args.output, "file")  # before the plan is printed
    plan = make_plan(
        args.config,
        devices=args.devices,
        device_memory=args.device_memory,
        seq_length=args.seq_length,
        batch_size=args.batch_size,
        recompute=args.recompute,
    )
    print(format_plan(plan))
    if args.output is not None:
        with atomic_output(args.output) as tmp:
            tmp.write_text(json.dumps(plan_json(plan), indent=2) + "\n")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan",
        help="per-device memory of a finetune YAML: breakdown, verdict, largest batch and seq",
        description="Count what one training step holds per device (weights, gradients, "
        "optimizer states, LoRA, activations per layer with and without recompute, logits, "
        "workspace), say whether it fits the device memory, and how far batch_size and "
        "seq_length can go; also under optimizer sharding (MindSpore's parallel optimizer).",
    )
    p.add_argument("--config", required=True, help="finetune YAML (MindFormers shape)")
    p.add_argument(
        "--devices", type=int, help="data-parallel devices (default: parallel_config.data_parallel)"
    )
    p.add_argument(
        "--device_memory",
        help="memory per device: 64GB, 58GiB, 512MB or bytes "
        "(default: context.max_device_memory; GB counts in 1024s, as MindSpore)",
    )
    p.add_argument(
        "--seq_length", type=int, help="tokens per row (default: model_config.seq_length)"
    )
    p.add_argument(
        "--batch_size",
        type=int,
        help="rows per device and step (default: runner_config.batch_size)",
    )
    p.add_argument(
        "--recompute",
        type=str2bool,
        help="True: recompute each layer's activations in the backward pass "
        "(default: recompute_config.recompute)",
    )
    p.add_argument(
        "--output", help="also write the plan as JSON to this file, e.g. plan.json (default: none)"
    )
    p.set_defaults(func=run)

"""`mindsft export-adapter` and `mindsft import-adapter`: mindsft's LoRA <-> PEFT's
adapter folder (adapter_model.safetensors + adapter_config.json)."""

import dataclasses

import yaml


def register(subparsers) -> None:
    e = subparsers.add_parser(
        "export-adapter",
        help="LoRA checkpoint -> PEFT adapter folder",
        description="Write the LoRA matrices of a mindsft LoRA checkpoint as a PEFT adapter "
        "(adapter_model.safetensors and adapter_config.json, HF module names), after checking "
        "them against the finetune YAML's pet_config.",
    )
    e.add_argument(
        "--config",
        required=True,
        help="the finetune YAML of the LoRA run (its model_config and pet_config)",
    )
    e.add_argument(
        "--lora_checkpoint",
        required=True,
        help="a LoRA checkpoint file (training checkpoint, or base + LoRA), or a run folder: "
        "its newest checkpoint/rank_0/*.ckpt",
    )
    e.add_argument("--output_dir", required=True, help="the adapter folder to write")
    e.add_argument(
        "--base_model_name_or_path",
        default=None,
        help="the HF base model (hub id or folder) recorded in adapter_config.json (default: none)",
    )
    e.set_defaults(func=run_export)

    i = subparsers.add_parser(
        "import-adapter",
        help="PEFT adapter folder -> LoRA checkpoint",
        description="Turn a PEFT LoRA adapter into a LoRA checkpoint under MindFormers' names, "
        "and print the pet_config a finetune YAML needs to merge or train on from it.",
    )
    i.add_argument(
        "--adapter_dir",
        required=True,
        help="folder with adapter_config.json and adapter_model.safetensors (or .bin)",
    )
    i.add_argument("--output_path", required=True, help="the LoRA checkpoint (.ckpt) to write")
    i.add_argument(
        "--config",
        default=None,
        help="the base model's HF config.json (or its folder) or finetune YAML: check layers "
        "and shapes against it (default: no check against a base)",
    )
    i.set_defaults(func=run_import)


def run_export(args) -> int:
    from mindsft.pet.peft_export import export_adapter

    adapter = export_adapter(
        args.config, args.lora_checkpoint, args.output_dir, args.base_model_name_or_path
    )
    print(
        f"wrote a PEFT LoRA adapter (r {adapter['r']}, lora_alpha {adapter['lora_alpha']}, "
        f"target_modules {adapter['target_modules']}) to {args.output_dir}"
    )
    return 0


def run_import(args) -> int:
    from mindsft.pet.peft_import import import_adapter

    lora = import_adapter(args.adapter_dir, args.output_path, args.config)
    block = {"pet_config": {"pet_type": "lora", **dataclasses.asdict(lora)}}
    print(f"# wrote the LoRA matrices of {args.adapter_dir} to {args.output_path}")
    print("# pet_config for the finetune YAML's model.model_config:")
    print(yaml.safe_dump(block, sort_keys=False), end="")
    return 0

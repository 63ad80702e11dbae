"""`mindsft convert-weight`: MindFormers' convert_weight.py, streaming."""

from mindsft.atomic import check_writable
from mindsft.convert import raw
from mindsft.errors import MindsftError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-weight",
        help="HF Llama folder -> MindSpore checkpoint (or back with --reversed)",
        description="Convert HF Llama weights (safetensors or .bin) to a MindSpore checkpoint "
        "with MindFormers' parameter names, one tensor at a time; --reversed turns a "
        "MindSpore checkpoint into an HF folder of sharded safetensors.",
    )
    p.add_argument(
        "--model", default="llama", help="model family; only llama (default: %(default)s)"
    )
    p.add_argument("--input_path", required=True, help="HF folder, or the .ckpt with --reversed")
    p.add_argument(
        "--output_path", required=True, help=".ckpt file, or the HF folder with --reversed"
    )
    p.add_argument(
        "--dtype",
        default=None,
        help=f"element type written: {', '.join(raw.DTYPE_WORDS)} (default fp32; "
        "with --reversed, as in the checkpoint)",
    )
    p.add_argument(
        "--reversed",
        action="store_true",
        help="convert a MindSpore checkpoint to an HF safetensors folder (default: off)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="with --reversed: HF config.json (or its folder) or MindFormers YAML; "
        "default: the OUT.ckpt.config.json written beside the checkpoint",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from mindsft.convert.llama import convert_hf_to_ms, convert_ms_to_hf

    if args.model != "llama":
        raise MindsftError(f"--model {args.model!r}: only llama is supported")
    if args.dtype is not None:
        raw.dtype_code(args.dtype)  # reject a bad word before reading anything
    check_writable(args.output_path, "dir" if args.reversed else "file")
    if args.reversed:
        summary = convert_ms_to_hf(args.input_path, args.output_path, args.config, args.dtype)
    else:
        if args.config is not None:
            raise MindsftError(
                "--config is only used with --reversed (the HF folder has config.json)"
            )
        summary = convert_hf_to_ms(args.input_path, args.output_path, args.dtype or "fp32")
    skipped = summary["skipped"]
    note = f" (left out {len(skipped)}, e.g. {skipped[0]})" if skipped else ""
    print(f"wrote {summary['tensors']} tensors to {args.output_path}{note}")
    return 0

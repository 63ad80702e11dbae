"""`mindsft alpaca-converter` and `mindsft preprocess`: MindFormers'
alpaca_converter.py and llama_preprocess.py, with their flags."""

from mindsft.cli import str2bool
from mindsft.data.template import TEMPLATE_NAME


def register(subparsers) -> None:
    _register_alpaca_converter(subparsers)
    _register_preprocess(subparsers)


def _register_alpaca_converter(subparsers) -> None:
    p = subparsers.add_parser(
        "alpaca-converter",
        help="alpaca JSON -> conversation JSON (Stanford Alpaca prompt)",
        description="Turn alpaca records (instruction, input, output) into FastChat "
        "conversation records, as MindFormers' alpaca_converter.py does.",
    )
    p.add_argument(
        "--data_path", required=True, help="alpaca-format JSON list (instruction, input, output)"
    )
    p.add_argument("--output_path", required=True, help="the conversation JSON to write")
    p.set_defaults(func=run_alpaca_converter)


def _register_preprocess(subparsers) -> None:
    p = subparsers.add_parser(
        "preprocess",
        help="conversations (qa) or text (wiki) -> MindRecord",
        description="Tokenize with a Llama SentencePiece model and write a MindRecord "
        "(+ .db) and OUTPUT_FILE.stats.json, row for row what MindFormers' "
        "llama_preprocess.py writes. qa input: a JSON list or JSON Lines of conversation/"
        "ShareGPT records (conversations: from/value), OpenAI chat records (messages: "
        "role/content) or alpaca records (instruction, input, output).",
    )
    p.add_argument(
        "--dataset_type",
        choices=["qa", "wiki"],
        default="wiki",
        help="qa: conversations, answers trained; wiki: text cut into rows, every token "
        "trained (default: %(default)s)",
    )
    p.add_argument(
        "--input_glob",
        required=True,
        help="input file, or a glob whose files are taken in sorted order",
    )
    p.add_argument("--model_file", required=True, help="the SentencePiece tokenizer.model")
    p.add_argument(
        "--seq_length",
        type=int,
        default=2048,
        help="tokens per row; rows are seq_length + 1 long (default: %(default)s)",
    )
    p.add_argument("--output_file", required=True, help="the MindRecord to write")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="tokenizer processes; 1 tokenizes in this process (default: %(default)s)",
    )
    _add_layout_flags(p)
    p.set_defaults(func=run_preprocess)


def _add_layout_flags(p) -> None:
    """preprocess's flags for how a row's text is laid out: the chat template, what
    is trained, the model config limiting seq_length, packing."""
    p.add_argument(
        "--template",
        default=TEMPLATE_NAME,
        help="qa: the FastChat conversation template the text is laid out in, e.g. "
        "llama-2, mistral, qwen-7b-chat, zephyr; vicuna_v1.1 gives MindFormers' rows "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--train_on_prompt",
        type=str2bool,
        default=False,
        help="qa: True trains on the whole text - system prompt, role tags and human "
        "turns too - not only on the answers (default: %(default)s)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="the model's HF config.json (or folder) or MindFormers YAML: seq_length may not "
        "exceed its positions (default: a config.json beside --model_file, if any)",
    )
    p.add_argument(
        "--packing",
        type=str2bool,
        default=False,
        help="qa: whole samples per row, as many as fit (default: False)",
    )


def run_alpaca_converter(args) -> int:
    from mindsft.data.alpaca import convert_alpaca

    n = convert_alpaca(args.data_path, args.output_path)
    print(f"wrote {n} conversations to {args.output_path}")
    return 0


def run_preprocess(args) -> int:
    from mindsft.data.preprocess import preprocess

    stats = preprocess(
        args.dataset_type,
        args.input_glob,
        args.model_file,
        args.seq_length,
        args.output_file,
        args.workers,
        args.template,
        args.train_on_prompt,
        args.config,
        packing=args.packing,
    )
    print(
        f"wrote {stats.rows} rows to {args.output_file}: {stats.trained_tokens} trained tokens, "
        f"{stats.rows_truncated} rows truncated, {stats.rows_fully_masked} fully masked"
    )
    return 0

"""`mindsft alpaca-converter` and `mindsft preprocess`: MindFormers'
alpaca_converter.py and llama_preprocess.py, with their flags."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "alpaca-converter",
        help="alpaca JSON -> conversation JSON (Stanford Alpaca prompt)",
        description="Turn alpaca records (instruction, input, output) into FastChat "
        "conversation records, as MindFormers' alpaca_converter.py does.",
    )
    p.add_argument("--data_path", required=True, help="alpaca-format JSON list")
    p.add_argument("--output_path", required=True, help="conversation JSON to write")
    p.set_defaults(func=run_alpaca_converter)

    p = subparsers.add_parser(
        "preprocess",
        help="conversation JSON (qa) or text (wiki) -> MindRecord",
        description="Tokenize with a Llama SentencePiece model and write a MindRecord "
        "(+ .db) and OUTPUT_FILE.stats.json, row for row what MindFormers' "
        "llama_preprocess.py writes.",
    )
    p.add_argument("--dataset_type", choices=["qa", "wiki"], default="wiki", help="default: wiki")
    p.add_argument(
        "--input_glob", required=True, help="input file (or glob, files taken in sorted order)"
    )
    p.add_argument("--model_file", required=True, help="SentencePiece tokenizer.model")
    p.add_argument(
        "--seq_length", type=int, default=2048, help="rows are seq_length + 1 tokens (default 2048)"
    )
    p.add_argument("--output_file", required=True, help="MindRecord to write")
    p.add_argument(
        "--workers", type=int, default=1, help="tokenizer processes (default 1: in this process)"
    )
    p.set_defaults(func=run_preprocess)


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
    )
    print(
        f"wrote {stats.rows} rows to {args.output_file}: {stats.trained_tokens} trained tokens, "
        f"{stats.rows_truncated} rows truncated, {stats.rows_fully_masked} fully masked"
    )
    return 0

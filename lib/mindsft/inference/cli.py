"""`mindsft evaluate` (perplexity, or exact match and F1 of generated answers) and
`mindsft generate` (one prompt; MindFormers' predict run mode is `mindsft run`)."""

import json
from pathlib import Path

from mindsft.atomic import atomic_output, check_writable
from mindsft.cli import str2bool
from mindsft.data.template import NO_TEMPLATE, TEMPLATE_NAME
from mindsft.errors import MindsftError

CONFIG_HELP = "MindFormers YAML, or HF config.json (or its folder)"
SETTINGS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "seed")
# --metric: what `mindsft evaluate` computes, and on what data
METRICS = {
    "perplexity": "loss and perplexity on a qa or wiki MindRecord (MindFormers' PerplexityMetric)",
    "em_f1": "exact match and token F1 of generated answers to alpaca records (SQuAD's rules)",
}


def register(subparsers) -> None:
    _register_evaluate(subparsers)
    _register_generate(subparsers)


def _register_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="loss and perplexity (or exact match and F1) of a checkpoint",
        description="--metric perplexity: mean loss over the unmasked target tokens (labels "
        "shifted as MindFormers does), perplexity, token count and wall time. --metric em_f1: "
        "greedy answers to alpaca records scored by exact match and token F1 (SQuAD's "
        "normalisation), each record's answer beside the scores. Written as JSON.",
    )
    p.add_argument("--config", required=True, help=CONFIG_HELP)
    p.add_argument("--load_checkpoint", required=True, help="MindSpore .ckpt (converted or merged)")
    p.add_argument(
        "--eval_dataset_dir",
        required=True,
        help="perplexity: .mindrecord from `mindsft preprocess`; em_f1: alpaca JSON",
    )
    p.add_argument("--output", required=True, help="metrics JSON to write")
    p.add_argument(
        "--batch_size",
        type=int,
        default=1,
        help="rows per forward pass, or prompts decoded together (default: %(default)s)",
    )
    p.add_argument(
        "--metric",
        default="perplexity",
        help=f"what to compute: {', '.join(METRICS)} (default: %(default)s)",
    )
    p.add_argument("--model_file", help="em_f1: the SentencePiece tokenizer.model (default: none)")
    p.add_argument(
        "--max_new_tokens",
        type=int,
        default=64,
        help="em_f1: most tokens of an answer (default: %(default)s)",
    )
    p.set_defaults(func=run_evaluate)


def _register_generate(subparsers) -> None:
    g = subparsers.add_parser(
        "generate",
        help="continue a prompt with a checkpoint (greedy or sampled, KV cache)",
        description="Tokenise the prompt (optionally in the fine-tuning chat template), decode "
        "until EOS or --max_new_tokens, print the completion.",
    )
    g.add_argument("--config", required=True, help=CONFIG_HELP)
    g.add_argument("--load_checkpoint", required=True, help="MindSpore .ckpt")
    g.add_argument("--model_file", required=True, help="SentencePiece tokenizer.model")
    g.add_argument("--prompt", required=True, help="the user's text")
    g.add_argument(
        "--max_new_tokens",
        type=int,
        default=128,
        help="most tokens to generate (default: %(default)s)",
    )
    g.add_argument(
        "--do_sample",
        type=str2bool,
        default=False,
        help="True: sample; False: greedy (default: %(default)s)",
    )
    g.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="divides the logits before sampling (default: %(default)s)",
    )
    g.add_argument(
        "--top_k",
        type=int,
        default=0,
        help="sample from the k most likely tokens; 0: all (default: %(default)s)",
    )
    g.add_argument(
        "--top_p",
        type=float,
        default=1.0,
        help="sample from the smallest set of tokens with this much mass; 1.0: all "
        "(default: %(default)s)",
    )
    g.add_argument("--seed", type=int, default=0, help="seeds sampling (default: %(default)s)")
    g.add_argument(
        "--template",
        default=TEMPLATE_NAME,
        help="the FastChat template the fine-tuning data was laid out in (any that "
        f"`preprocess --template` takes), or {NO_TEMPLATE} for the text as it is "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--output",
        default=None,
        help="also write prompt, ids and completion to this JSON file (default: none)",
    )
    g.set_defaults(func=run_generate)


def run_evaluate(args) -> int:
    if args.metric not in METRICS:
        raise MindsftError(f"--metric {args.metric}: unknown (known: {', '.join(METRICS)})")
    if args.batch_size < 1:
        raise MindsftError(f"--batch_size {args.batch_size}: must be at least 1")
    check_writable(args.output, "file")  # before MindSpore is even imported
    if args.metric == "em_f1":
        return run_em_f1(args)
    from mindsft.inference.evaluate import evaluate_to_file

    evaluate_to_file(
        args.config, args.load_checkpoint, args.eval_dataset_dir, args.output, args.batch_size
    )
    return 0


def run_em_f1(args) -> int:
    from mindsft.inference.answers import em_f1_to_file

    if not args.model_file:
        raise MindsftError("--metric em_f1 needs --model_file (the tokenizer to answer with)")
    em_f1_to_file(
        args.config,
        args.load_checkpoint,
        args.model_file,
        args.eval_dataset_dir,
        args.output,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    return 0


def check_generate_args(args) -> None:
    """Sampling settings outside their range are one line naming the flag."""
    checks = [
        (args.max_new_tokens >= 1, f"--max_new_tokens {args.max_new_tokens}: must be at least 1"),
        (args.temperature > 0, f"--temperature {args.temperature}: must be positive"),
        (0 < args.top_p <= 1, f"--top_p {args.top_p}: must be in (0, 1]"),
        (args.top_k >= 0, f"--top_k {args.top_k}: must be 0 (off) or positive"),
    ]
    for ok, message in checks:
        if not ok:
            raise MindsftError(message)


def run_generate(args) -> int:
    from mindsft.data.template import chat_prompt

    check_generate_args(args)
    text = chat_prompt(args.prompt, args.template)  # an unknown template fails here
    if args.output:
        check_writable(args.output, "file")  # before MindSpore is even imported
    from mindsft.inference.generate import load_generator

    generator, tokenizer = load_generator(args.config, args.load_checkpoint, args.model_file)
    settings = {k: getattr(args, k) for k in SETTINGS}
    done = generator.complete(tokenizer, text, **settings)
    print(done.text)
    if args.output:
        record = {
            "prompt": args.prompt,
            "template": args.template,
            "prompt_text": text,
            "prompt_ids": done.prompt_ids,
            "completion_ids": done.ids,
            "completion": done.text,
            "stopped_at_eos": done.stopped_at_eos,
            "settings": settings,
        }
        with atomic_output(args.output) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return 0

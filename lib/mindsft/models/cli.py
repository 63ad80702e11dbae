"""`mindsft evaluate` and `mindsft generate` (MindFormers' predict run mode)."""

import json
from pathlib import Path

from mindsft.atomic import atomic_output
from mindsft.cli import str2bool
from mindsft.errors import MindsftError

TEMPLATES = ("vicuna_v1.1", "none")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="loss and perplexity of a checkpoint on a qa MindRecord",
        description="Mean loss over the unmasked target tokens (labels shifted as MindFormers "
        "does), perplexity, token count and wall time, written as JSON.",
    )
    p.add_argument(
        "--config", required=True, help="MindFormers YAML, or HF config.json (or its folder)"
    )
    p.add_argument("--load_checkpoint", required=True, help="MindSpore .ckpt (converted or merged)")
    p.add_argument(
        "--eval_dataset_dir", required=True, help="qa .mindrecord written by `mindsft preprocess`"
    )
    p.add_argument("--output", required=True, help="metrics JSON to write")
    p.add_argument("--batch_size", type=int, default=1, help="rows per forward pass (default 1)")
    p.set_defaults(func=run_evaluate)

    g = subparsers.add_parser(
        "generate",
        help="continue a prompt with a checkpoint (greedy or sampled, KV cache)",
        description="Tokenise the prompt (optionally in the fine-tuning chat template), decode "
        "until EOS or --max_new_tokens, print the completion.",
    )
    g.add_argument(
        "--config", required=True, help="MindFormers YAML, or HF config.json (or its folder)"
    )
    g.add_argument("--load_checkpoint", required=True, help="MindSpore .ckpt")
    g.add_argument("--model_file", required=True, help="SentencePiece tokenizer.model")
    g.add_argument("--prompt", required=True, help="the user's text")
    g.add_argument("--max_new_tokens", type=int, default=128)
    g.add_argument("--do_sample", type=str2bool, default=False, help="True: sample; False: greedy")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top_k", type=int, default=0, help="keep the k most likely tokens (0: all)")
    g.add_argument("--top_p", type=float, default=1.0, help="nucleus mass to keep (1.0: all)")
    g.add_argument("--seed", type=int, default=0, help="seeds sampling")
    g.add_argument(
        "--template",
        choices=TEMPLATES,
        default="vicuna_v1.1",
        help="wrap the prompt as the fine-tuning data was (FastChat vicuna_v1.1), or none",
    )
    g.add_argument("--output", default=None, help="also write prompt, ids and completion as JSON")
    g.set_defaults(func=run_generate)


def run_evaluate(args) -> int:
    from mindsft.models.evaluate import evaluate, write_metrics

    if args.batch_size < 1:
        raise MindsftError(f"--batch_size {args.batch_size}: must be at least 1")
    metrics = evaluate(args.config, args.load_checkpoint, args.eval_dataset_dir, args.batch_size)
    write_metrics(metrics, args.output)
    print(
        f"loss {metrics['loss']:.6f}  perplexity {metrics['perplexity']:.4f}  tokens "
        f"{metrics['tokens']}"
        f"  rows {metrics['rows']}  ({metrics['wall_time_s']:.1f} s) -> {args.output}"
    )
    return 0


def chat_prompt(text: str, template: str) -> str:
    """The text the model sees: FastChat's vicuna_v1.1 conversation up to the
    assistant's turn (how `mindsft preprocess` lays out training data), or `text`."""
    if template == "none":
        return text
    from fastchat.conversation import get_conv_template

    conv = get_conv_template(template)
    conv.append_message(conv.roles[0], text)
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


def run_generate(args) -> int:
    import sentencepiece as spm

    from mindsft.models.config import load_config
    from mindsft.models.generate import generate
    from mindsft.models.loading import load_model

    checks = [
        (args.max_new_tokens >= 1, f"--max_new_tokens {args.max_new_tokens}: must be at least 1"),
        (args.temperature > 0, f"--temperature {args.temperature}: must be positive"),
        (0 < args.top_p <= 1, f"--top_p {args.top_p}: must be in (0, 1]"),
        (args.top_k >= 0, f"--top_k {args.top_k}: must be 0 (off) or positive"),
        (Path(args.model_file).is_file(), f"{args.model_file}: no such tokenizer file"),
    ]
    for ok, message in checks:
        if not ok:
            raise MindsftError(message)
    config = load_config(args.config)
    tokenizer = spm.SentencePieceProcessor(model_file=str(args.model_file))
    if tokenizer.get_piece_size() != config.vocab_size:
        raise MindsftError(
            f"{args.model_file}: tokenizer has {tokenizer.get_piece_size()} pieces, "
            f"the model's vocab_size is {config.vocab_size}"
        )
    model = load_model(config, args.load_checkpoint)
    text = chat_prompt(args.prompt, args.template)
    prompt_ids = [config.bos_token_id, *tokenizer.encode(text)]
    new_ids = generate(
        model,
        prompt_ids,
        args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )
    stopped = bool(new_ids) and new_ids[-1] == config.eos_token_id
    completion = tokenizer.decode(new_ids[:-1] if stopped else new_ids)
    print(completion)
    if args.output:
        record = {
            "prompt": args.prompt,
            "template": args.template,
            "prompt_text": text,
            "prompt_ids": prompt_ids,
            "completion_ids": new_ids,
            "completion": completion,
            "stopped_at_eos": stopped,
            "settings": {
                k: getattr(args, k)
                for k in ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "seed")
            },
        }
        with atomic_output(args.output) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return 0

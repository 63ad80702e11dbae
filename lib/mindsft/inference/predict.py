"""MindFormers' predict run mode (`mindsft run --run_mode predict`): prompts from
--predict_data, continued in batches of --predict_batch_size (left padding, KV
cache), printed as MindFormers prints them and written as JSON lines.

MindFormers' text generation returns, per pipeline call (a batch), the decoded
sequences with their prompts, `{'text_generation_text': [text, ...]}`, and logs
the list of them as `output result is: [...]`."""

import json
from pathlib import Path

from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError
from mindsft.files import read_text

NEEDS_DATA = (
    "--run_mode predict needs --predict_data: a prompt, several prompts, or a file of "
    "prompts (one per line, or a JSON list)"
)


def _unescape(prompt: str) -> str:
    return prompt.replace(r"\n", "\n")  # run_mindformer.py turns a typed \n into a newline


def _prompt_file(path: Path) -> list:
    """A JSON list of strings, else one prompt per non-blank line."""
    text = read_text(path, "prompt file")
    prompts = None
    if text.lstrip().startswith("["):
        try:
            prompts = json.loads(text)
        except json.JSONDecodeError:
            prompts = None  # a line that happens to start with "["
    if isinstance(prompts, list):
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise MindsftError(
                    f"{path}: item {i} of the JSON list is {type(prompt).__name__}, "
                    "expected a prompt string"
                )
    else:
        prompts = [_unescape(line) for line in text.splitlines() if line.strip()]
    if not prompts:
        raise MindsftError(f"{path}: empty prompt file (no prompts)")
    return prompts


def read_prompts(predict_data) -> list:
    """The prompts --predict_data gives (argparse's list of its words): several words
    are that many prompts; one word naming a file is a file of prompts; any other
    word is one prompt."""
    if not predict_data:
        raise MindsftError(NEEDS_DATA)
    if isinstance(predict_data, str):
        predict_data = [predict_data]
    if len(predict_data) == 1:
        path = Path(predict_data[0])
        if path.is_dir():
            raise MindsftError(
                f"{path}: --predict_data is a directory; mindsft predicts text prompts only"
            )
        if path.is_file():
            return _prompt_file(path)
    return [_unescape(p) for p in predict_data]


def generation_settings(model_config: dict, source, seed: int = 0) -> dict:
    """Decoding settings from MindFormers' `model_config` keys: max_decode_length
    (prompt and new tokens together) or max_new_tokens, do_sample (default False:
    greedy), top_k, top_p, temperature."""
    where = f"{source}: model_config"
    penalty = model_config.get("repetition_penalty", 1)
    if penalty not in (None, 1, 1.0):
        raise MindsftError(f"{where}.repetition_penalty {penalty}: not implemented (use 1)")
    try:
        settings = {
            "max_length": int(model_config.get("max_decode_length") or 1024),
            "max_new_tokens": model_config.get("max_new_tokens"),
            "do_sample": bool(model_config.get("do_sample", False)),
            "top_k": int(model_config.get("top_k") or 0),
            "top_p": float(model_config.get("top_p") or 1.0),
            "temperature": float(model_config.get("temperature") or 1.0),
            "seed": int(seed),
        }
    except (TypeError, ValueError) as exc:
        raise MindsftError(f"{where}: a generation setting is not a number ({exc})") from None
    if settings["max_new_tokens"] is not None:
        settings["max_new_tokens"] = int(settings["max_new_tokens"])
    return settings


def new_token_budget(settings: dict, prompt_length: int) -> int:
    """How many tokens may follow a prompt: max_new_tokens, else what max_length leaves."""
    if settings["max_new_tokens"] is not None:
        return settings["max_new_tokens"]
    return max(settings["max_length"] - prompt_length, 0)


def predict(config, checkpoint, tokenizer_file, prompts, batch_size, settings, output) -> list:
    """Continue every prompt (BOS first, no chat template: MindFormers' text
    generation), `batch_size` at a time; print MindFormers' `output result is: ...`
    lines and write one JSON line per prompt to `output`. Returns the records."""
    from mindsft.inference.generate import Generator, load_tokenizer
    from mindsft.models.loading import load_model

    tokenizer = load_tokenizer(tokenizer_file, config.vocab_size)
    generator = Generator(load_model(config, checkpoint))
    sampling = {k: settings[k] for k in ("do_sample", "top_k", "top_p", "temperature", "seed")}
    records, printed = [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        prompt_ids = [[config.bos_token_id, *tokenizer.encode(p)] for p in chunk]
        budgets = [new_token_budget(settings, len(ids)) for ids in prompt_ids]
        outputs = generator.batch(prompt_ids, budgets, **sampling)
        texts = []
        for prompt, ids, new in zip(chunk, prompt_ids, outputs, strict=True):
            stopped = bool(new) and new[-1] == config.eos_token_id
            text = tokenizer.decode(ids[1:] + (new[:-1] if stopped else new))
            texts.append(text)
            records.append(
                {
                    "prompt": prompt,
                    "text_generation_text": text,
                    "prompt_ids": ids,
                    "output_ids": new,
                    "stopped_at_eos": stopped,
                }
            )
        printed.append({"text_generation_text": texts})
    with atomic_output(output) as tmp:
        lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        Path(tmp).write_text("".join(lines), encoding="utf-8")
    print(f"output result is: {printed}")
    print(f"output result is saved at: {output}")
    print(".........Predict Over!.............")
    return records

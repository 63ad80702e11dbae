"""Sample generations for the report: each alpaca record laid out exactly as the
training data was (the alpaca prompt inside FastChat's vicuna_v1.1 turn), decoded
greedily by the merged model."""

import json
from pathlib import Path

from mindsft.atomic import atomic_output


def generate_samples(*, config, checkpoint, tokenizer, records, max_new_tokens, out) -> list:
    """Write [{"instruction", "input", "completion"}] for every record to `out`."""
    import sentencepiece as spm

    from mindsft.data.alpaca import alpaca_prompt
    from mindsft.models.cli import chat_prompt
    from mindsft.models.config import load_config
    from mindsft.models.generate import generate
    from mindsft.models.loading import load_model

    cfg = load_config(config)
    model = load_model(cfg, checkpoint)
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    samples = []
    for record in records:
        text = chat_prompt(alpaca_prompt(record), "vicuna_v1.1")
        new_ids = generate(model, [cfg.bos_token_id, *sp.encode(text)], max_new_tokens)
        if new_ids and new_ids[-1] == cfg.eos_token_id:
            new_ids = new_ids[:-1]
        samples.append(
            {
                "instruction": record["instruction"],
                "input": record.get("input", ""),
                "completion": sp.decode(new_ids),
            }
        )
    with atomic_output(out) as tmp:
        Path(tmp).write_text(json.dumps(samples, ensure_ascii=False, indent=2) + "\n")
    return samples

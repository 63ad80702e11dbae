"""Sample generations for the report: each alpaca record laid out exactly as the
training data was (the alpaca prompt inside FastChat's vicuna_v1.1 turn), decoded
greedily by the merged model."""

import json
from pathlib import Path

from mindsft.atomic import atomic_output


def generate_samples(*, config, checkpoint, tokenizer, records, max_new_tokens, out) -> list:
    """Write [{"instruction", "input", "completion"}] for every record to `out`."""
    from mindsft.data.alpaca import alpaca_prompt
    from mindsft.data.template import chat_prompt
    from mindsft.inference.generate import load_generator

    generator, sp = load_generator(config, checkpoint, tokenizer)
    samples = []
    for record in records:
        done = generator.complete(sp, chat_prompt(alpaca_prompt(record)), max_new_tokens)
        samples.append(
            {
                "instruction": record["instruction"],
                "input": record.get("input", ""),
                "completion": done.text,
            }
        )
    with atomic_output(out) as tmp:
        Path(tmp).write_text(json.dumps(samples, ensure_ascii=False, indent=2) + "\n")
    return samples

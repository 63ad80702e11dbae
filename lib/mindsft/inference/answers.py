"""Task metrics by generation: a checkpoint answers held-out alpaca records, laid
out exactly as the training data was (the Stanford Alpaca prompt inside FastChat's
vicuna_v1.1 turn), decoded greedily in batches; the answers are scored against
the records' outputs with SQuAD's exact match and token F1 (`metrics.em_f1`)."""

import json
import time
from pathlib import Path

from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError


def evaluate_em_f1(
    config, checkpoint, tokenizer, records, *, max_new_tokens=64, batch_size=8, source="records"
) -> dict:
    """Exact match and F1 (percentages) of `checkpoint`'s greedy answers to the alpaca
    `records` (dicts with instruction, optional input, output), and every record's
    answer and scores under "answers". `config` is a MindFormers YAML or HF
    config.json, `tokenizer` the SentencePiece model; `source` names the records in
    errors."""
    from mindsft.data.alpaca import to_conversations
    from mindsft.data.template import chat_prompt
    from mindsft.inference.generate import load_generator
    from mindsft.inference.metrics import em_f1

    if batch_size < 1 or max_new_tokens < 1:
        raise MindsftError(
            f"batch_size {batch_size} and max_new_tokens {max_new_tokens}: both must be at least 1"
        )
    start = time.perf_counter()
    turns = [c["conversations"] for c in to_conversations(records, source)]
    prompts = [chat_prompt(human["value"]) for human, _ in turns]
    references = [gpt["value"] for _, gpt in turns]
    generator, sp = load_generator(config, checkpoint, tokenizer)
    answers = []
    for i in range(0, len(prompts), batch_size):
        done = generator.complete_batch(sp, prompts[i : i + batch_size], max_new_tokens)
        answers += [d.text.strip() for d in done]
    scores = em_f1(answers, references)
    rows = [
        {
            "instruction": record["instruction"],
            "input": record.get("input", ""),
            "reference": reference,
            "answer": answer,
            **score,
        }
        for record, reference, answer, score in zip(
            records, references, answers, scores["per_record"], strict=True
        )
    ]
    return {
        "metric": "em_f1",
        "exact_match": scores["exact_match"],
        "f1": scores["f1"],
        "records": scores["count"],
        "max_new_tokens": max_new_tokens,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "checkpoint": str(checkpoint),
        "config": str(config),
        "answers": rows,
    }


def em_f1_to_file(config, checkpoint, tokenizer, dataset, output, **options) -> dict:
    """`evaluate_em_f1` on the alpaca JSON file `dataset`, written to `output` as JSON
    (atomically) and summed up in one printed line."""
    from mindsft.data.alpaca import load_json_list

    records = load_json_list(dataset)
    metrics = evaluate_em_f1(config, checkpoint, tokenizer, records, source=dataset, **options)
    metrics["dataset"] = str(dataset)
    with atomic_output(output) as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    print(
        f"exact match {metrics['exact_match']:.2f}  F1 {metrics['f1']:.2f}  records "
        f"{metrics['records']}  ({metrics['wall_time_s']:.1f} s) -> {output}"
    )
    return metrics

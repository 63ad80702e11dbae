"""Running a model: evaluate.py (loss and perplexity, the one evaluation loop),
generate.py (batched decoding with a KV cache: `Generator`), predict.py
(MindFormers' predict run mode), metrics.py (SQuAD's exact match and F1),
answers.py (answers generated for alpaca records, scored), cli.py (the `evaluate`
and `generate` subcommands)."""

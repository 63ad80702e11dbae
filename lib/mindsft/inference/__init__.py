"""Running a model: evaluate.py (loss and perplexity, the one evaluation loop),
generate.py (decoding with a KV cache: `Generator`), cli.py (the `evaluate` and
`generate` subcommands). MindFormers' predict run mode belongs here too."""

"""The Llama model, numerically HF's, with MindFormers' parameter names: config.py
(LlamaConfig from HF config.json or a MindFormers YAML), llama.py (the model, its
full, cached and one-step forwards), attention.py, norm.py, rope.py, loss.py (the
masked causal-LM loss), loading.py (a checkpoint into the model). Running it -
evaluation and generation - is mindsft.inference."""

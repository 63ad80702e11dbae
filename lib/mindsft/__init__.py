"""mindsft: MindFormers-style supervised fine-tuning of Llama models, one Snakemake rule
per step."""

__version__ = "0.1.0"

"""Rule make_tiny_model: the offline demo's HF-format Llama, tokenizer and data."""

from mindsft.tiny import make_tiny_model
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    print(f"wrote {make_tiny_model(smk.output[0], **smk.params.options)}")

"""Rule make_tiny_model: the offline demo's HF-format Llama, tokenizer and data."""

import sys

from mindsft.cli import main
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

options = [f"--{k}={v}" for k, v in sorted(smk.params.options.items())]
with log_to(smk.log[0]):
    rc = main(["make-tiny-model", "--output_dir", smk.output[0], *options])
sys.exit(rc)

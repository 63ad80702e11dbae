"""Rule download_dataset: fetch an alpaca JSON from its URL."""

from mindsft.workflow.data import fetch_url
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    fetch_url(smk.params.url, smk.output[0], sha256=smk.params.sha256)

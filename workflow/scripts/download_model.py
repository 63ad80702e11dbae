"""Rule download_model: a model snapshot from the Hugging Face hub."""

from mindsft.convert.download import download
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    print(f"wrote {download(smk.params.repo_id, smk.output[0], smk.params.revision)}")

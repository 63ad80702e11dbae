"""Rule report_config: the validated configuration (defaults filled in)."""

from mindsft.workflow.config import write_config
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    write_config(smk.params.config, smk.output[0])

"""Rule report_em: exact match and F1 before and after fine-tuning, and every
held-out question with its reference and both answers."""

from mindsft.workflow.logs import log_to
from mindsft.workflow.plots import em_html

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    em_html(smk.input.base, smk.input.tuned, smk.output[0], title=smk.wildcards.run)

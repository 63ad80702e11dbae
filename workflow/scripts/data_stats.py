"""Rule data_stats: one table of the MindRecord stats files."""

from mindsft.workflow.logs import log_to
from mindsft.workflow.plots import stats_html

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    stats_html(list(smk.input), smk.output[0])

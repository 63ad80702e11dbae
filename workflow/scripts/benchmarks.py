"""Rule benchmarks: runtime and peak memory per stage from the benchmark files."""

from mindsft.workflow.logs import log_to
from mindsft.workflow.plots import benchmarks_report

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    benchmarks_report(list(smk.input), smk.output.table, smk.output.plot)

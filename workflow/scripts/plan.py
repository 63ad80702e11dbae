"""Rule plan: the run's memory plan (JSON, text, and the report's table)."""

from mindsft.workflow.logs import log_to
from mindsft.workflow.plan import write_run_plan

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    write_run_plan(
        smk.input[0],
        smk.params.devices,
        smk.params.seq_length,
        smk.output.json,
        smk.output.text,
        smk.output.table,
    )

"""Rule resolve_config: the finetune YAML with the run's seq_length and overrides."""

from mindsft.workflow.config import write_resolved_yaml
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    write_resolved_yaml(smk.input[0], smk.output[0], smk.params.seq_length, smk.params.overrides)

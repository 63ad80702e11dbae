"""Rules plot_loss and plot_pretrain_loss: the training loss curve of one run."""

from mindsft.workflow.logs import log_to
from mindsft.workflow.plots import plot_loss

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    plot_loss(f"{smk.input[0]}/loss.jsonl", smk.output[0], title=smk.params.title)

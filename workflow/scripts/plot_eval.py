"""Rule plot_eval: eval loss/perplexity before and after fine-tuning, and samples."""

from mindsft.workflow.logs import log_to
from mindsft.workflow.plots import plot_eval, samples_html

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    plot_eval(smk.input.base, smk.input.tuned, smk.output.plot, title=smk.wildcards.run)
    samples_html(smk.input.samples, smk.output.samples, title=smk.wildcards.run)

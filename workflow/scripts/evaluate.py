"""Rules evaluate and evaluate_base: eval loss and perplexity of a checkpoint."""

from mindsft.inference.evaluate import evaluate_to_file
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    evaluate_to_file(
        config=smk.params.config,
        checkpoint=smk.params.checkpoint,
        dataset=smk.input.data,
        output=smk.output[0],
    )

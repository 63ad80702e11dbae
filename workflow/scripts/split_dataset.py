"""Rule split_dataset: hold out the eval records of an alpaca JSON."""

from mindsft.workflow.data import split_alpaca
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    counts = split_alpaca(
        smk.params.alpaca,
        smk.output.train,
        smk.output.eval,
        eval_records=smk.params.eval_records,
        seed=smk.params.seed,
    )
    print(f"{smk.params.alpaca}: {counts['train']} train, {counts['eval']} eval records")

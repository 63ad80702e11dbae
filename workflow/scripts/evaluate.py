"""Rules evaluate and evaluate_base: eval loss and perplexity of a checkpoint."""

import sys

from mindsft.cli import main
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    rc = main(
        [
            "evaluate",
            "--config",
            smk.params.config,
            "--load_checkpoint",
            smk.params.checkpoint,
            "--eval_dataset_dir",
            smk.input.data,
            "--output",
            smk.output[0],
        ]
    )
sys.exit(rc)

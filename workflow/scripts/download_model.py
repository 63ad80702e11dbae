"""Rule download_model: a model snapshot from the Hugging Face hub."""

import sys

from mindsft.cli import main
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    rc = main(
        [
            "download",
            "--repo_id",
            smk.params.repo_id,
            "--revision",
            smk.params.revision,
            "--output_dir",
            smk.output[0],
        ]
    )
sys.exit(rc)

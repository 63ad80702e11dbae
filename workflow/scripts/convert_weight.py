"""Rule convert_weight: HF weights -> MindSpore checkpoint with MindFormers' names."""

import sys

from mindsft.cli import main
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    rc = main(
        [
            "convert-weight",
            "--model",
            "llama",
            "--input_path",
            smk.input.hf,
            "--output_path",
            smk.output.ckpt,
            "--dtype",
            smk.params.dtype,
        ]
    )
sys.exit(rc)

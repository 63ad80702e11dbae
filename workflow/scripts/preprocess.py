"""Rule preprocess: conversation JSON -> qa MindRecord (+ .db, + stats JSON).

Guarded by __main__: the worker processes (spawn) re-import this file."""

import sys

from mindsft.cli import main
from mindsft.workflow.logs import log_to

if __name__ == "__main__":
    smk = snakemake  # noqa: F821 (injected by Snakemake)
    with log_to(smk.log[0]):
        rc = main(
            [
                "preprocess",
                "--dataset_type",
                "qa",
                "--input_glob",
                smk.input.data,
                "--model_file",
                smk.params.tokenizer,
                "--seq_length",
                smk.wildcards.seq,
                "--output_file",
                smk.output.mindrecord,
                "--workers",
                str(smk.threads),
            ]
        )
    sys.exit(rc)

"""Rule alpaca_converter: alpaca records -> conversation JSON (MindFormers' format)."""

import sys

from mindsft.cli import main
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    rc = main(["alpaca-converter", "--data_path", smk.input[0], "--output_path", smk.output[0]])
sys.exit(rc)

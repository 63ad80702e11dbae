"""Rule alpaca_converter: alpaca records -> conversation JSON (MindFormers' format)."""

from mindsft.data.alpaca import convert_alpaca
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    n = convert_alpaca(smk.input[0], smk.output[0])
    print(f"wrote {n} conversations to {smk.output[0]}")

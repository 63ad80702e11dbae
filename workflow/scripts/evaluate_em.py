"""Rules evaluate_em and evaluate_em_base: exact match and F1 of a checkpoint's
greedy answers to held-out alpaca records, each record's answer kept."""

from mindsft.inference.answers import em_f1_to_file
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    em_f1_to_file(
        smk.params.config,
        smk.params.checkpoint,
        smk.params.tokenizer,
        smk.params.records,
        smk.output[0],
        max_new_tokens=smk.params.max_new_tokens,
        batch_size=smk.params.batch_size,
    )

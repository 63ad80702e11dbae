"""Rules preprocess and preprocess_wiki: conversation JSON -> qa MindRecord, or wiki
text -> wiki MindRecord (every token a target); + .db, + stats JSON.

Guarded by __main__: the worker processes (spawn) re-import this file."""

from mindsft.data.preprocess import preprocess
from mindsft.workflow.logs import log_to

if __name__ == "__main__":
    smk = snakemake  # noqa: F821 (injected by Snakemake)
    with log_to(smk.log[0]):
        stats = preprocess(
            smk.params.dataset_type,
            smk.params.source,
            smk.params.tokenizer,
            int(smk.wildcards.seq),
            smk.output.mindrecord,
            smk.threads,
            packing=smk.params.packing,
        )
        print(f"wrote {stats.rows} rows to {smk.output.mindrecord}")

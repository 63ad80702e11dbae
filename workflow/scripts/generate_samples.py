"""Rule generate_samples: greedy answers of the merged model to the sample records."""

from mindsft.workflow.logs import log_to
from mindsft.workflow.samples import generate_samples

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    generate_samples(
        config=smk.params.config,
        checkpoint=f"{smk.input.ckpt}/model.ckpt",
        tokenizer=f"{smk.input.ckpt}/tokenizer.model",
        records=smk.params.records,
        max_new_tokens=smk.params.max_new_tokens,
        out=smk.output[0],
    )

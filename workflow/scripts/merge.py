"""Rule merge: results/{run}/ckpt with the merged checkpoint, YAML and manifest."""

from mindsft.workflow.logs import log_to
from mindsft.workflow.package import package_run

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    package_run(
        run=smk.wildcards.run,
        train_dir=smk.input.train,
        config=smk.input.config,
        base_checkpoint=smk.input.weights,
        tokenizer=smk.params.tokenizer,
        out_dir=smk.output[0],
        packing=smk.params.packing,
        provenance={
            "hf_model": smk.input.model,
            "alpaca": smk.input.alpaca,
            "train_data": smk.input.train_data,
        },
    )

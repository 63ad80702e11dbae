"""Rules finetune and pretrain: `mindsft finetune` or `mindsft run --run_mode
train` under msrun, one msrun per node, in a work dir stable for the run's
parameters (a killed attempt resumes); the output appears whole or not at all."""

from mindsft.workflow.launch import launch_training
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    launch_training(
        config=smk.input.config,
        train_data=smk.input.data,
        weights=smk.input.weights,
        output_dir=smk.output[0],
        workers=smk.params.workers,
        nodes=getattr(smk.resources, "nodes", 1),  # pretraining: one node
        log_dir=smk.params.msrun_logs,
        code=smk.params.code,
        run_mode=smk.params.run_mode,
    )

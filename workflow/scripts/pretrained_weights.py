"""Rule pretrained_weights: the pretraining run's last checkpoint (rank 0's,
checked equal on every rank) as the checkpoint the model's runs start from."""

from mindsft.train.config import load_finetune_config
from mindsft.train.merge import merge_lora_checkpoint
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    cfg = load_finetune_config(smk.input.config)
    merge_lora_checkpoint(cfg, smk.input.weights, smk.input.train, smk.output[0])

"""Rule convert_weight: HF weights -> MindSpore checkpoint with MindFormers' names."""

from mindsft.convert.llama import convert_hf_to_ms
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    summary = convert_hf_to_ms(smk.input.hf, smk.output.ckpt, smk.params.dtype)
    print(f"wrote {summary['tensors']} tensors to {smk.output.ckpt}")

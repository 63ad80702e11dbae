# mindsft: HF weights + alpaca JSON -> fine-tuned, merged MindSpore checkpoint.
# `snakemake --cores 2` builds the offline tiny demo (config `demo_runs`);
# `snakemake --cores 8 results/lora_llama2_7b/ckpt` the production run.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    model=one_of(MODELS),
    dataset=one_of(DATASETS),
    run=one_of(RUNS),
    split="train|eval",
    seq=r"\d+",


include: "rules/weights.smk"
include: "rules/data.smk"
include: "rules/finetune.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        demo_targets(),

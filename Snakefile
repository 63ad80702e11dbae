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
    packing=r"(\.packed)?",


# Small or network-bound jobs run where Snakemake runs (a cluster's login node,
# which can usually reach the hub), not as cluster jobs.
localrules:
    download_model,
    download_dataset,
    split_dataset,
    resolve_config,
    report_config,
    plot_loss,
    plot_eval,
    plot_pretrain_loss,
    report_em,
    data_stats,
    benchmarks,


include: "rules/weights.smk"
include: "rules/data.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        demo_targets(),

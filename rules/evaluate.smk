# Eval loss / perplexity on the held-out split, before and after fine-tuning;
# sample generations of the merged model.


rule evaluate_base:
    input:
        model=model_dir,
        weights="results/weights/{model}.ckpt",
        data="results/data/{dataset}/eval/{model}_{seq}.mindrecord",
    output:
        "results/eval_base/{model}/{dataset}_{seq}.json",
    log:
        "logs/evaluate_base/{model}_{dataset}_{seq}.log",
    benchmark:
        "benchmarks/evaluate_base/{model}_{dataset}_{seq}.tsv"
    params:
        config=model_config,
        checkpoint=weights_input,
        code=code("evaluate"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/evaluate.py"


rule evaluate:
    input:
        model=model_dir,
        ckpt="results/{run}/ckpt",
        data=run_eval_data,
    output:
        "results/{run}/eval/metrics.json",
    log:
        "logs/evaluate/{run}.log",
    benchmark:
        "benchmarks/evaluate/{run}.tsv"
    params:
        config=model_config,
        checkpoint="results/{run}/ckpt/model.ckpt",
        code=code("evaluate"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/evaluate.py"


rule generate_samples:
    input:
        model=model_dir,
        ckpt="results/{run}/ckpt",
    output:
        "results/{run}/eval/samples.json",
    log:
        "logs/generate_samples/{run}.log",
    benchmark:
        "benchmarks/generate_samples/{run}.tsv"
    params:
        config=model_config,
        records=config["samples"]["records"],
        max_new_tokens=config["samples"]["max_new_tokens"],
        code=code("generate_samples"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/generate_samples.py"

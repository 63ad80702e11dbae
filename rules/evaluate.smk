# Eval loss / perplexity on the held-out split and exact match on held-out
# questions, before and after fine-tuning; sample generations of the merged model.


rule evaluate_base:
    input:
        model=model_dir,
        weights=model_weights,
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


rule evaluate_em_base:
    input:
        unpack(em_input),
        model=model_dir,
        weights=model_weights,
    output:
        "results/eval_base/{model}/{dataset}_em.json",
    log:
        "logs/evaluate_em_base/{model}_{dataset}.log",
    benchmark:
        "benchmarks/evaluate_em_base/{model}_{dataset}.tsv"
    params:
        config=model_config,
        checkpoint=weights_input,
        tokenizer=model_tokenizer,
        records=job_em_records,
        max_new_tokens=config["exact_match"]["max_new_tokens"],
        batch_size=config["exact_match"]["batch_size"],
        code=code("evaluate_em"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/evaluate_em.py"


rule evaluate_em:
    input:
        unpack(em_input),
        model=model_dir,
        ckpt="results/{run}/ckpt",
    output:
        "results/{run}/eval/em.json",
    log:
        "logs/evaluate_em/{run}.log",
    benchmark:
        "benchmarks/evaluate_em/{run}.tsv"
    params:
        config=model_config,
        checkpoint="results/{run}/ckpt/model.ckpt",
        tokenizer=model_tokenizer,
        records=job_em_records,
        max_new_tokens=config["exact_match"]["max_new_tokens"],
        batch_size=config["exact_match"]["batch_size"],
        code=code("evaluate_em"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/evaluate_em.py"

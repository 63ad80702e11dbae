# Eval loss / perplexity on the held-out split, before and after fine-tuning;
# sample generations of the merged model.


rule evaluate_base:
    input:
        model=lambda w: hf_dir(w.model),
        weights="results/weights/{model}.ckpt",
        data="results/data/{dataset}/eval/{model}_{seq}.mindrecord",
    output:
        "results/eval_base/{model}/{dataset}_{seq}.json",
    log:
        "logs/evaluate_base/{model}_{dataset}_{seq}.log",
    benchmark:
        "benchmarks/evaluate_base/{model}_{dataset}_{seq}.tsv"
    params:
        config=lambda w: f"{hf_dir(w.model)}/config.json",
        checkpoint=lambda w, input: input.weights,
        code=code("models", "data/reader.py"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/evaluate.py"


rule evaluate:
    input:
        model=lambda w: hf_dir(RUNS[w.run]["model"]),
        ckpt="results/{run}/ckpt",
        data=lambda w: mindrecord(w.run, "eval"),
    output:
        "results/{run}/eval/metrics.json",
    log:
        "logs/evaluate/{run}.log",
    benchmark:
        "benchmarks/evaluate/{run}.tsv"
    params:
        config=lambda w: f"{hf_dir(RUNS[w.run]['model'])}/config.json",
        checkpoint="results/{run}/ckpt/model.ckpt",
        code=code("models", "data/reader.py"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/evaluate.py"


rule generate_samples:
    input:
        model=lambda w: hf_dir(RUNS[w.run]["model"]),
        ckpt="results/{run}/ckpt",
    output:
        "results/{run}/eval/samples.json",
    log:
        "logs/generate_samples/{run}.log",
    benchmark:
        "benchmarks/generate_samples/{run}.tsv"
    params:
        config=lambda w: f"{hf_dir(RUNS[w.run]['model'])}/config.json",
        records=config["samples"]["records"],
        max_new_tokens=config["samples"]["max_new_tokens"],
        code=code("models", "workflow/samples.py"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/generate_samples.py"

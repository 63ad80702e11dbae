# HF-format weights (hub, local folder or the tiny demo model) -> MindSpore checkpoint.


rule make_tiny_model:
    output:
        directory("resources/tiny/{model}"),
    log:
        "logs/make_tiny_model/{model}.log",
    benchmark:
        "benchmarks/make_tiny_model/{model}.tsv"
    params:
        options=tiny_options,
        code=code("make_tiny_model"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/make_tiny_model.py"


rule download_model:
    output:
        directory("resources/hf/{model}"),
    log:
        "logs/download_model/{model}.log",
    benchmark:
        "benchmarks/download_model/{model}.tsv"
    params:
        repo_id=model_setting("repo_id"),
        revision=model_setting("revision"),
        code=code("download_model"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/download_model.py"


rule convert_weight:
    input:
        hf=model_dir,
    output:
        ckpt="results/weights/{model}.ckpt",
        config="results/weights/{model}.ckpt.config.json",
    log:
        "logs/convert_weight/{model}.log",
    benchmark:
        "benchmarks/convert_weight/{model}.tsv"
    params:
        dtype=model_setting("dtype"),
        code=code("convert_weight"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/convert_weight.py"

# alpaca JSON -> held-out split -> conversation JSON -> MindRecord (+ .db, stats);
# `{model}_{seq}.packed.mindrecord` is the packed one (preprocess --packing True).


rule download_dataset:
    output:
        "resources/data/{dataset}.json",
    log:
        "logs/download_dataset/{dataset}.log",
    benchmark:
        "benchmarks/download_dataset/{dataset}.tsv"
    params:
        url=dataset_setting("url"),
        sha256=dataset_setting("sha256"),
        code=code("download_dataset"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/download_dataset.py"


rule split_dataset:
    input:
        unpack(dataset_input),
    output:
        train="results/data/{dataset}/train/alpaca.json",
        eval="results/data/{dataset}/eval/alpaca.json",
    log:
        "logs/split_dataset/{dataset}.log",
    benchmark:
        "benchmarks/split_dataset/{dataset}.tsv"
    params:
        alpaca=dataset_alpaca,
        eval_records=dataset_setting("eval_records"),
        seed=dataset_setting("seed"),
        code=code("split_dataset"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/split_dataset.py"


rule alpaca_converter:
    input:
        "results/data/{dataset}/{split}/alpaca.json",
    output:
        "results/data/{dataset}/{split}/conversation.json",
    log:
        "logs/alpaca_converter/{dataset}_{split}.log",
    benchmark:
        "benchmarks/alpaca_converter/{dataset}_{split}.tsv"
    params:
        code=code("alpaca_converter"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/alpaca_converter.py"


rule preprocess:
    input:
        data="results/data/{dataset}/{split}/conversation.json",
        model=model_dir,
    output:
        mindrecord="results/data/{dataset}/{split}/{model}_{seq}{packing}.mindrecord",
        db="results/data/{dataset}/{split}/{model}_{seq}{packing}.mindrecord.db",
        stats="results/data/{dataset}/{split}/{model}_{seq}{packing}.mindrecord.stats.json",
    log:
        "logs/preprocess/{dataset}_{split}_{model}_{seq}{packing}.log",
    benchmark:
        "benchmarks/preprocess/{dataset}_{split}_{model}_{seq}{packing}.tsv"
    params:
        dataset_type="qa",
        source=data_input,
        tokenizer=model_tokenizer,
        packing=packed_rows,
        code=code("preprocess"),
    threads: config["preprocess_workers"]
    conda:
        ENV
    script:
        "../workflow/scripts/preprocess.py"

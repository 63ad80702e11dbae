# base checkpoint + MindRecord + finetune YAML -> training run (msrun) -> merged checkpoint.


rule resolve_config:
    input:
        run_finetune_yaml,
    output:
        report(
            "results/{run}/finetune.yaml",
            caption="../workflow/report/finetune_yaml.rst",
            category="{run}",
            subcategory="configuration",
        ),
    log:
        "logs/resolve_config/{run}.log",
    benchmark:
        "benchmarks/resolve_config/{run}.tsv"
    params:
        seq_length=run_setting("seq_length"),
        overrides=run_setting("overrides"),
        code=code("resolve_config"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/resolve_config.py"


rule finetune:
    input:
        config="results/{run}/finetune.yaml",
        data=run_train_data,
        weights=model_weights,
    output:
        directory("results/{run}/train"),
    log:
        "logs/finetune/{run}.log",
    benchmark:
        "benchmarks/finetune/{run}.tsv"
    params:
        workers=run_setting("workers"),
        msrun_logs="logs/finetune/{run}.msrun",
        run_mode="finetune",
        code=code("train"),
    threads: run_setting("workers")
    resources:
        nodes=run_setting("nodes"),
        devices=run_setting("workers"),
        tasks=run_setting("nodes"),
        mpi=run_mpi,
    conda:
        ENV
    script:
        "../workflow/scripts/train.py"


rule merge:
    input:
        train="results/{run}/train",
        config="results/{run}/finetune.yaml",
        weights=model_weights,
        model=model_dir,
        train_data=run_train_data,
        alpaca=run_train_alpaca,
    output:
        directory("results/{run}/ckpt"),
    log:
        "logs/merge/{run}.log",
    benchmark:
        "benchmarks/merge/{run}.tsv"
    params:
        tokenizer=model_tokenizer,
        packing=run_setting("packing"),
        code=code("merge"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/merge.py"

# base checkpoint + MindRecord + finetune YAML -> training run (msrun) -> merged checkpoint.


rule resolve_config:
    input:
        lambda w: finetune_yaml(w.run),
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
        seq_length=lambda w: RUNS[w.run]["seq_length"],
        overrides=lambda w: RUNS[w.run]["overrides"],
        code=code("workflow/config.py"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/resolve_config.py"


rule finetune:
    input:
        config="results/{run}/finetune.yaml",
        data=lambda w: mindrecord(w.run, "train"),
        weights=lambda w: f"results/weights/{RUNS[w.run]['model']}.ckpt",
    output:
        directory("results/{run}/train"),
    log:
        "logs/finetune/{run}.log",
    benchmark:
        "benchmarks/finetune/{run}.tsv"
    params:
        workers=lambda w: RUNS[w.run]["workers"],
        msrun_logs=lambda w: f"logs/finetune/{w.run}.msrun",
        code=code("train", "models", "pet", "data/reader.py", "workflow/launch.py"),
    threads: lambda w: RUNS[w.run]["workers"]
    resources:
        nodes=lambda w: RUNS[w.run]["nodes"],
        devices=lambda w: RUNS[w.run]["workers"],
        tasks=lambda w: RUNS[w.run]["nodes"],
        mpi=lambda w: "srun" if RUNS[w.run]["nodes"] > 1 else "",
    conda:
        ENV
    script:
        "../workflow/scripts/finetune.py"


rule merge:
    input:
        train="results/{run}/train",
        config="results/{run}/finetune.yaml",
        weights=lambda w: f"results/weights/{RUNS[w.run]['model']}.ckpt",
        model=lambda w: hf_dir(RUNS[w.run]["model"]),
        train_data=lambda w: mindrecord(w.run, "train"),
        alpaca=lambda w: f"results/data/{RUNS[w.run]['dataset']}/train/alpaca.json",
    output:
        directory("results/{run}/ckpt"),
    log:
        "logs/merge/{run}.log",
    benchmark:
        "benchmarks/merge/{run}.tsv"
    params:
        tokenizer=lambda w: tokenizer(RUNS[w.run]["model"]),
        code=code("pet", "train/config.py", "workflow/package.py"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/merge.py"

# A model with `pretrain:` is pretrained before its runs fine-tune it: its folder's
# wiki text -> wiki MindRecord -> `mindsft run --run_mode train` (msrun) from the
# converted weights -> results/weights/{model}.pretrained.ckpt.


rule preprocess_wiki:
    input:
        model=model_dir,
    output:
        mindrecord="results/pretrain/{model}/wiki_{seq}.mindrecord",
        db="results/pretrain/{model}/wiki_{seq}.mindrecord.db",
        stats="results/pretrain/{model}/wiki_{seq}.mindrecord.stats.json",
    log:
        "logs/preprocess_wiki/{model}_{seq}.log",
    benchmark:
        "benchmarks/preprocess_wiki/{model}_{seq}.tsv"
    params:
        dataset_type="wiki",
        source=model_wiki_text,
        tokenizer=model_tokenizer,
        packing=False,
        code=code("preprocess"),
    threads: config["preprocess_workers"]
    conda:
        ENV
    script:
        "../workflow/scripts/preprocess.py"


rule resolve_pretrain_config:
    input:
        pretrain_yaml,
    output:
        report(
            "results/pretrain/{model}/pretrain.yaml",
            caption="../workflow/report/finetune_yaml.rst",
            category="pretraining",
            subcategory="{model}",
        ),
    log:
        "logs/resolve_pretrain_config/{model}.log",
    benchmark:
        "benchmarks/resolve_pretrain_config/{model}.tsv"
    params:
        seq_length=pretrain_setting("seq_length"),
        overrides=pretrain_setting("overrides"),
        code=code("resolve_config"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/resolve_config.py"


rule pretrain:
    input:
        config="results/pretrain/{model}/pretrain.yaml",
        data=pretrain_data,
        weights="results/weights/{model}.ckpt",
    output:
        directory("results/pretrain/{model}/train"),
    log:
        "logs/pretrain/{model}.log",
    benchmark:
        "benchmarks/pretrain/{model}.tsv"
    params:
        workers=pretrain_setting("workers"),
        msrun_logs="logs/pretrain/{model}.msrun",
        run_mode="train",
        code=code("train"),
    threads: pretrain_setting("workers")
    conda:
        ENV
    script:
        "../workflow/scripts/train.py"


rule pretrained_weights:
    input:
        train="results/pretrain/{model}/train",
        config="results/pretrain/{model}/pretrain.yaml",
        weights="results/weights/{model}.ckpt",
    output:
        "results/weights/{model}.pretrained.ckpt",
    log:
        "logs/pretrained_weights/{model}.log",
    benchmark:
        "benchmarks/pretrained_weights/{model}.tsv"
    params:
        code=code("pretrained_weights"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/pretrained_weights.py"


rule plot_pretrain_loss:
    input:
        "results/pretrain/{model}/train",
    output:
        report(
            "results/report/pretrain/{model}/loss.png",
            caption="../workflow/report/pretrain.rst",
            category="pretraining",
            subcategory="{model}",
        ),
    log:
        "logs/plot_pretrain_loss/{model}.log",
    benchmark:
        "benchmarks/plot_pretrain_loss/{model}.tsv"
    params:
        title=pretrain_title,
        code=code("plot_loss"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/plot_loss.py"

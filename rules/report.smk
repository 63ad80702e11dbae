# Plots and tables for `snakemake --report report.html`, one category per run.


rule plot_loss:
    input:
        "results/{run}/train",
    output:
        report(
            "results/report/{run}/loss.png",
            caption="../workflow/report/loss.rst",
            category="{run}",
            subcategory="training",
        ),
    log:
        "logs/plot_loss/{run}.log",
    benchmark:
        "benchmarks/plot_loss/{run}.tsv"
    params:
        title=run_title,
        code=code("plot_loss"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/plot_loss.py"


rule plan:
    input:
        "results/{run}/finetune.yaml",
    output:
        json="results/{run}/plan.json",
        text="results/{run}/plan.txt",
        table=report(
            "results/report/{run}/plan.html",
            caption="../workflow/report/plan.rst",
            category="{run}",
            subcategory="memory plan",
        ),
    log:
        "logs/plan/{run}.log",
    benchmark:
        "benchmarks/plan/{run}.tsv"
    params:
        devices=run_devices,
        seq_length=run_setting("seq_length"),
        code=code("plan"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/plan.py"


rule plot_eval:
    input:
        base=run_base_metrics,
        tuned="results/{run}/eval/metrics.json",
        samples="results/{run}/eval/samples.json",
    output:
        plot=report(
            "results/report/{run}/eval.png",
            caption="../workflow/report/eval.rst",
            category="{run}",
            subcategory="evaluation",
        ),
        samples=report(
            "results/report/{run}/samples.html",
            caption="../workflow/report/samples.rst",
            category="{run}",
            subcategory="evaluation",
        ),
    log:
        "logs/plot_eval/{run}.log",
    benchmark:
        "benchmarks/plot_eval/{run}.tsv"
    params:
        code=code("plot_eval"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/plot_eval.py"


rule report_em:
    input:
        base=run_base_em,
        tuned="results/{run}/eval/em.json",
    output:
        report(
            "results/report/{run}/em.html",
            caption="../workflow/report/em.rst",
            category="{run}",
            subcategory="evaluation",
        ),
    log:
        "logs/report_em/{run}.log",
    benchmark:
        "benchmarks/report_em/{run}.tsv"
    params:
        code=code("report_em"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/report_em.py"


rule data_stats:
    input:
        report_stats(),
    output:
        report(
            "results/report/data_stats.html",
            caption="../workflow/report/data_stats.rst",
            category="data",
        ),
    log:
        "logs/data_stats.log",
    benchmark:
        "benchmarks/data_stats.tsv"
    params:
        code=code("data_stats"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/data_stats.py"


rule benchmarks:
    input:
        report_benchmarks,
    output:
        table=report(
            "results/report/benchmarks.html",
            caption="../workflow/report/benchmarks.rst",
            category="benchmarks",
        ),
        plot=report(
            "results/report/benchmarks.png",
            caption="../workflow/report/benchmarks.rst",
            category="benchmarks",
        ),
    log:
        "logs/benchmarks.log",
    benchmark:
        "benchmarks/benchmarks.tsv"
    params:
        code=code("benchmarks"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/benchmarks.py"


rule report_config:
    output:
        report(
            "results/report/config.yaml",
            caption="../workflow/report/config.rst",
            category="configuration",
        ),
    log:
        "logs/report_config.log",
    benchmark:
        "benchmarks/report_config.tsv"
    params:
        config=config,
        code=code("report_config"),
    threads: 1
    conda:
        ENV
    script:
        "../workflow/scripts/report_config.py"

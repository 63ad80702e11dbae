"""The benchmark table's files are found from the rules' own `benchmark:`
directives, by walking the jobs behind the demo runs' results the way Snakemake
does (dry runs of the real workflow)."""

EXTRA_RULE = """
include: "{snakefile}"


rule fetch_custom:
    output:
        directory("resources/custom/{{model}}"),
    log:
        "logs/fetch_custom/{{model}}.log",
    benchmark:
        "benchmarks/fetch_custom/{{model}}.tsv"
    shell:
        "cp -r resources/tiny/tiny {{output}}"
"""


def benchmark_inputs(snakemake, workdir, **kwargs) -> list:
    """The input files of the `benchmarks` job, as a dry run plans it."""
    out = snakemake(workdir, "-n", "results/report/benchmarks.html", **kwargs).stdout
    block = out[out.index("rule benchmarks:") :]
    line = next(li for li in block.splitlines() if li.strip().startswith("input:"))
    return line.split("input:", 1)[1].replace(",", " ").split()


def test_the_table_holds_every_job_behind_the_demo_runs_once(tmp_path, write_config, snakemake):
    write_config(tmp_path)
    files = benchmark_inputs(snakemake, tmp_path)
    upstream = [
        "make_tiny_model/tiny",
        "convert_weight/tiny",
        "split_dataset/tiny_alpaca",
        "alpaca_converter/tiny_alpaca_train",
        "alpaca_converter/tiny_alpaca_eval",
        "preprocess/tiny_alpaca_train_tiny_96",
        "preprocess/tiny_alpaca_eval_tiny_96",
        "preprocess_wiki/tiny_128",
        "resolve_pretrain_config/tiny",
        "pretrain/tiny",
        "pretrained_weights/tiny",
        "evaluate_base/tiny_tiny_alpaca_96",
        "evaluate_em_base/tiny_tiny_alpaca",
    ]
    per_run = ["resolve_config", "finetune", "merge", "evaluate", "evaluate_em", "generate_samples"]
    expected = upstream + [f"{s}/{r}" for r in ("tiny_lora", "tiny_full") for s in per_run]
    assert sorted(files) == sorted(f"benchmarks/{name}.tsv" for name in expected)
    # upstream first: a job's benchmark comes after those of the jobs it needs
    assert files.index("benchmarks/make_tiny_model/tiny.tsv") < files.index(
        "benchmarks/convert_weight/tiny.tsv"
    )
    assert files.index("benchmarks/finetune/tiny_lora.tsv") < files.index(
        "benchmarks/merge/tiny_lora.tsv"
    )
    assert files.index("benchmarks/pretrained_weights/tiny.tsv") < files.index(
        "benchmarks/finetune/tiny_lora.tsv"
    )


def test_a_new_rule_with_a_benchmark_joins_the_table(tmp_path, repo, write_config, snakemake):
    """A Snakefile that includes the project's and adds a rule making a model's
    folder: a run on that model puts the new rule's benchmark in the table."""

    def custom_run(config):
        config["models"]["custom"] = {"path": "resources/custom/custom", "dtype": "fp32"}
        config["runs"]["custom_lora"] = {**config["runs"]["tiny_lora"], "model": "custom"}
        config["demo_runs"] = ["custom_lora"]

    write_config(tmp_path, custom_run)
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(EXTRA_RULE.format(snakefile=repo / "Snakefile"))
    files = benchmark_inputs(snakemake, tmp_path, snakefile=snakefile)
    assert "benchmarks/fetch_custom/custom.tsv" in files
    assert "benchmarks/convert_weight/custom.tsv" in files
    assert "benchmarks/make_tiny_model/tiny.tsv" in files  # the dataset comes from it
    assert "benchmarks/make_tiny_model/custom.tsv" not in files
    assert files.index("benchmarks/fetch_custom/custom.tsv") < files.index(
        "benchmarks/convert_weight/custom.tsv"
    )

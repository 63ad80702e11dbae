"""The workflow's config: schema validation naming the key, cross-references,
lint and formatting, and a dry run of the production targets that stays offline."""

import subprocess

import pytest

PRODUCTION = ["results/lora_llama2_7b/ckpt", "results/finetune_llama2_7b/ckpt"]
# STYLE.md's directive order (input, output, log, benchmark, params, threads,
# resources, conda, then the action), spelled out for snakefmt.
DIRECTIVE_ORDER = (
    "name,default_target,input,output,log,benchmark,params,threads,resources,conda,container,"
    "singularity,containerized,envmodules,pathvars,wildcard_constraints,cache,priority,"
    "retries,group,localrule,handover,shadow,message"
)


def test_a_misspelt_key_is_named_in_one_line(tmp_path, write_config, snakemake):
    write_config(
        tmp_path, lambda c: c["runs"]["tiny_lora"].update(modle=c["runs"]["tiny_lora"].pop("model"))
    )
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert (
        "config: runs.tiny_lora: Additional properties are not allowed ('modle' was unexpected)"
        in result.stdout + result.stderr
    )


def test_a_wrong_type_names_the_key(tmp_path, write_config, snakemake):
    write_config(tmp_path, lambda c: c["runs"]["tiny_full"].update(seq_length="long"))
    result = snakemake(tmp_path, "-n", check=False)
    assert (
        "config: runs.tiny_full.seq_length: 'long' is not of type 'integer'"
        in result.stdout + result.stderr
    )


def test_a_run_naming_an_unknown_model_is_refused(tmp_path, write_config, snakemake):
    write_config(tmp_path, lambda c: c["runs"]["tiny_lora"].update(model="llama3"))
    result = snakemake(tmp_path, "-n", check=False)
    assert "config: runs.tiny_lora.model: 'llama3' is not defined" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("edit", "line"),
    [
        (
            lambda c: c["datasets"]["tiny_alpaca"].update(eval_records=400),
            "config: datasets.tiny_alpaca.eval_records: 400 leaves nothing to train on "
            "(96 records in the tiny demo's alpaca_demo.json)",
        ),
        (
            lambda c: c["runs"]["tiny_lora"].update(overrides={"runner_config.epohcs": 1}),
            "config: runs.tiny_lora.overrides (config/finetune/tiny_lora.yaml): override "
            "'runner_config.epohcs': no such key in the finetune YAML; did you mean "
            "runner_config.epochs?",
        ),
        (
            lambda c: c["models"]["tiny"]["pretrain"]["overrides"].update(
                {"runner_config.epohcs": 1}
            ),
            "config: models.tiny.pretrain.overrides (config/finetune/tiny_pretrain.yaml): "
            "override 'runner_config.epohcs': no such key in the finetune YAML; did you mean "
            "runner_config.epochs?",
        ),
    ],
)
def test_dataset_and_override_errors_stop_the_dry_run_in_one_line(
    tmp_path, write_config, snakemake, edit, line
):
    write_config(tmp_path, edit)
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert line in (result.stdout + result.stderr).splitlines()


def test_check_config_counts_a_local_dataset_and_leaves_a_url_to_its_split_job(tmp_path, repo):
    import json

    import yaml
    from mindsft.errors import MindsftError
    from mindsft.workflow.config import check_config

    config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    (tmp_path / "a.json").write_text(json.dumps([{"instruction": "i", "output": "o"}] * 5))
    config["datasets"]["alpaca"]["eval_records"] = 10**6  # a URL: unknown until fetched
    check_config(config, repo)
    config["datasets"]["tiny_alpaca"] = {"path": str(tmp_path / "a.json"), "eval_records": 5}
    with pytest.raises(MindsftError, match=r"eval_records: 5 leaves nothing to train on \(5 rec"):
        check_config(config, repo)
    config["datasets"]["tiny_alpaca"]["eval_records"] = 4
    config["runs"]["tiny_full"]["overrides"] = {"runner_config.epochs": 1.5}
    message = (
        "config/finetune/tiny_full.yaml with runs.tiny_full.overrides: runner_config.epochs: "
        "expected a positive integer, got 1.5"
    )
    with pytest.raises(MindsftError, match=f"^{message}$"):
        check_config(config, repo)


def test_production_targets_dry_run_plans_the_whole_dag_offline(
    tmp_path, write_config, snakemake, planned_jobs
):
    write_config(tmp_path)
    jobs = planned_jobs(tmp_path, *PRODUCTION)
    assert jobs == {
        "download_model": 1,
        "download_dataset": 1,
        "convert_weight": 1,
        "split_dataset": 1,
        "alpaca_converter": 1,
        "preprocess": 1,
        "resolve_config": 2,
        "finetune": 2,
        "merge": 2,
    }
    # and once more with no network at all: a dry run must not reach for it
    result = snakemake(tmp_path, "-n", *PRODUCTION, offline=True)
    assert "resources/hf/llama2_7b" in result.stdout
    assert not (tmp_path / "resources").exists()


def test_the_production_finetune_asks_for_8_devices_on_one_node(tmp_path, write_config, snakemake):
    write_config(tmp_path)
    out = snakemake(tmp_path, "-n", "-p", PRODUCTION[0]).stdout
    block = out[out.index("rule finetune:") :].split("\n\n")[0]
    assert "nodes=1" in block and "devices=8" in block


def test_lint_is_clean(tmp_path, write_config, snakemake):
    write_config(tmp_path)
    result = snakemake(tmp_path, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_snakefmt_is_clean(repo, venv_bin):
    cmd = [
        str(venv_bin / "snakefmt"),
        "--check",
        "-o",
        DIRECTIVE_ORDER,
        str(repo / "Snakefile"),
        str(repo / "rules"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("target", ["results/tiny_lora/ckpt", "results/tiny_full/ckpt"])
def test_demo_runs_start_from_the_pretrained_tiny_model(
    tmp_path, target, write_config, planned_jobs
):
    write_config(tmp_path)
    jobs = planned_jobs(tmp_path, target)
    assert jobs["make_tiny_model"] == 1 and "download_model" not in jobs
    for rule in ("preprocess_wiki", "resolve_pretrain_config", "pretrain", "pretrained_weights"):
        assert jobs[rule] == 1, rule


def test_pretrain_needs_its_yaml_and_seq_length(tmp_path, write_config, snakemake):
    write_config(tmp_path, lambda c: c["models"]["tiny"]["pretrain"].pop("seq_length"))
    result = snakemake(tmp_path, "-n", check=False)
    assert "config: models.tiny.pretrain: 'seq_length' is a required property" in (
        result.stdout + result.stderr
    )

# Config validation, wildcard constraints and the input functions the rules share.
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from mindsft.workflow.config import check_config, schema_error
from mindsft.workflow.provenance import source_sha256

try:
    validate(config, schema="../config/schema.yaml")
except WorkflowError as exc:
    schema = Path(workflow.basedir) / "config" / "schema.yaml"
    raise WorkflowError(schema_error(config, schema) or str(exc)) from None
check_config(config, root=workflow.basedir)

ENV = "../envs/mindsft.yaml"
MODELS, DATASETS, RUNS = config["models"], config["datasets"], config["runs"]


def one_of(names):
    return "|".join(re.escape(n) for n in names)


def code(*subpackages):
    """sha256 of the mindsft code a stage runs, as a param: changing it reruns the stage."""
    return source_sha256(*subpackages)


def hf_dir(model):
    """Folder with the HF-format weights and tokenizer.model of `model`."""
    spec = MODELS[model]
    if "path" in spec:
        return spec["path"]
    if "tiny" in spec:
        return f"resources/tiny/{model}"
    return f"resources/hf/{model}"


def finetune_yaml(run):
    """The run's finetune YAML; a relative path is relative to the workflow."""
    return str(Path(workflow.basedir) / RUNS[run]["finetune_config"])


def tokenizer(model):
    return f"{hf_dir(model)}/tokenizer.model"


def tiny_options(wildcards):
    """make-tiny-model options (flag name -> value) from the model's `tiny:`."""
    return MODELS[wildcards.model]["tiny"]


def dataset_json(dataset):
    """Path of the alpaca JSON of `dataset`."""
    spec = DATASETS[dataset]
    if "path" in spec:
        return spec["path"]
    if "tiny_model" in spec:
        return f"{hf_dir(spec['tiny_model'])}/alpaca_demo.json"
    return f"resources/data/{dataset}.json"


def dataset_input(wildcards):
    """Input of split_dataset: the alpaca file, or the tiny model folder holding it."""
    spec = DATASETS[wildcards.dataset]
    if "tiny_model" in spec:
        return {"source": hf_dir(spec["tiny_model"])}
    return {"source": dataset_json(wildcards.dataset)}


def mindrecord(run, split):
    """The MindRecord a run trains (split=train) or is evaluated (eval) on."""
    r = RUNS[run]
    return (
        f"results/data/{r['dataset']}/{split}/{r['model']}_{r['seq_length']}.mindrecord"
    )


def base_metrics(run):
    """Evaluation of the model before fine-tuning, on the run's eval split."""
    r = RUNS[run]
    return f"results/eval_base/{r['model']}/{r['dataset']}_{r['seq_length']}.json"


def run_targets(run):
    """Everything a run produces: checkpoint, metrics, samples, report items."""
    return [
        f"results/{run}/ckpt",
        f"results/{run}/eval/metrics.json",
        f"results/report/{run}/loss.png",
        f"results/report/{run}/eval.png",
        f"results/report/{run}/samples.html",
    ]


def run_benchmarks(run):
    """The benchmark files of every stage that leads to a run's results."""
    r = RUNS[run]
    m, d, s = r["model"], r["dataset"], r["seq_length"]
    files = []
    if "tiny" in MODELS[m]:
        files.append(f"benchmarks/make_tiny_model/{m}.tsv")
    elif "repo_id" in MODELS[m]:
        files.append(f"benchmarks/download_model/{m}.tsv")
    if "url" in DATASETS[d]:
        files.append(f"benchmarks/download_dataset/{d}.tsv")
    files += [f"benchmarks/convert_weight/{m}.tsv", f"benchmarks/split_dataset/{d}.tsv"]
    for split in ("train", "eval"):
        files.append(f"benchmarks/alpaca_converter/{d}_{split}.tsv")
        files.append(f"benchmarks/preprocess/{d}_{split}_{m}_{s}.tsv")
    files.append(f"benchmarks/evaluate_base/{m}_{d}_{s}.tsv")
    for stage in (
        "resolve_config",
        "finetune",
        "merge",
        "evaluate",
        "generate_samples",
    ):
        files.append(f"benchmarks/{stage}/{run}.tsv")
    return files


def report_benchmarks():
    """Benchmark files of the demo runs, each once."""
    return list(
        dict.fromkeys(f for run in config["demo_runs"] for f in run_benchmarks(run))
    )


def report_stats():
    """Stats files of the MindRecords the demo runs train and evaluate on."""
    files = [
        f"{mindrecord(run, split)}.stats.json"
        for run in config["demo_runs"]
        for split in ("train", "eval")
    ]
    return list(dict.fromkeys(files))


def demo_targets():
    targets = [t for run in config["demo_runs"] for t in run_targets(run)]
    return targets + [
        "results/report/data_stats.html",
        "results/report/benchmarks.html",
        "results/report/config.yaml",
    ]

# Config validation, and the functions the rules share: paths built from the
# config, and the input/params functions that look up a job's model, dataset or run.
import re
from pathlib import Path
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from mindsft.errors import MindsftError
from mindsft.tiny import DEMO_FILE, HELDOUT_FILE, TEXT_FILE
from mindsft.workflow.config import check_config, schema_error
from mindsft.workflow.dag import upstream_benchmarks
from mindsft.workflow.provenance import code_sha256

# The project's folder (Snakefile, config/, workflow/), also when a Snakefile
# elsewhere includes the project's.
ROOT = Path(workflow.current_basedir).parent

try:
    validate(config, schema="../config/schema.yaml")
except WorkflowError as exc:
    raise WorkflowError(
        schema_error(config, ROOT / "config" / "schema.yaml") or str(exc)
    ) from None
try:  # references, dataset sizes, each run's finetune YAML with its overrides
    check_config(config, root=ROOT)
except MindsftError as exc:
    raise WorkflowError(str(exc)) from None

ENV = "../envs/mindsft.yaml"
MODELS, DATASETS, RUNS = config["models"], config["datasets"], config["runs"]


def one_of(names):
    return "|".join(re.escape(n) for n in names)


def code(script):
    """sha256 of workflow/scripts/{script}.py and of the mindsft modules it imports,
    as a param: the rule reruns exactly when code it runs changes."""
    return code_sha256(ROOT / "workflow" / "scripts" / f"{script}.py")


# ---- paths, by model, dataset and run name


def hf_dir(model):
    """Folder with the HF-format weights and tokenizer.model of `model`."""
    spec = MODELS[model]
    if "path" in spec:
        return spec["path"]
    if "tiny" in spec:
        return f"resources/tiny/{model}"
    return f"resources/hf/{model}"


def dataset_json(dataset):
    """Path of the alpaca JSON of `dataset`."""
    spec = DATASETS[dataset]
    if "path" in spec:
        return spec["path"]
    if "tiny_model" in spec:
        return f"{hf_dir(spec['tiny_model'])}/{DEMO_FILE}"
    return f"resources/data/{dataset}.json"


def em_records(dataset):
    """The alpaca records exact match is scored on: a tiny model's held-out
    questions (about facts only its pretraining text states), else the eval split."""
    spec = DATASETS[dataset]
    if "tiny_model" in spec:
        return f"{hf_dir(spec['tiny_model'])}/{HELDOUT_FILE}"
    return f"results/data/{dataset}/eval/alpaca.json"


def weights(model):
    """The checkpoint a model's runs start from: the pretrained one for a model
    with `pretrain:`, else the converted HF weights."""
    if "pretrain" in MODELS[model]:
        return f"results/weights/{model}.pretrained.ckpt"
    return f"results/weights/{model}.ckpt"


def mindrecord(run, split):
    """The MindRecord a run trains (split=train; packed with `packing`) or is
    evaluated (eval; padded) on."""
    r = RUNS[run]
    packed = ".packed" if split == "train" and r["packing"] else ""
    return f"results/data/{r['dataset']}/{split}/{r['model']}_{r['seq_length']}{packed}.mindrecord"


def base_metrics(run):
    """Evaluation of the model before fine-tuning, on the run's eval split."""
    r = RUNS[run]
    return f"results/eval_base/{r['model']}/{r['dataset']}_{r['seq_length']}.json"


def base_em(run):
    """Exact match of the model before fine-tuning, on the run's held-out records."""
    r = RUNS[run]
    return f"results/eval_base/{r['model']}/{r['dataset']}_em.json"


# ---- input and params functions: a job's settings from its wildcards


def model_setting(key):
    """Params function: `key` of the job's {model} in config.yaml's models."""

    def get(wildcards):
        return MODELS[wildcards.model][key]

    return get


def dataset_setting(key):
    """Params function: `key` of the job's {dataset} in datasets (None if unset)."""

    def get(wildcards):
        return DATASETS[wildcards.dataset].get(key)

    return get


def run_setting(key):
    """Params/threads/resources function: `key` of the job's {run} in runs."""

    def get(wildcards):
        return RUNS[wildcards.run][key]

    return get


def run_devices(wildcards):
    """Params function: the run's data-parallel devices, workers x nodes."""
    run = RUNS[wildcards.run]
    return run["workers"] * run["nodes"]


def job_model(wildcards):
    """The model a job works on: its {model}, or the model of its {run}."""
    if "model" in wildcards.keys():
        return wildcards.model
    return RUNS[wildcards.run]["model"]


def model_dir(wildcards):
    """The job's model folder (HF weights, config.json, tokenizer.model)."""
    return hf_dir(job_model(wildcards))


def model_config(wildcards):
    """The HF config.json of the job's model."""
    return f"{model_dir(wildcards)}/config.json"


def model_tokenizer(wildcards):
    """The SentencePiece tokenizer.model of the job's model."""
    return f"{model_dir(wildcards)}/tokenizer.model"


def model_weights(wildcards):
    """The checkpoint the job's model is fine-tuned from and evaluated as the base:
    converted, then pretrained where the model has `pretrain:`."""
    return weights(job_model(wildcards))


def pretrain_setting(key):
    """Params/threads function: `key` of the job's {model}'s `pretrain:`."""

    def get(wildcards):
        return MODELS[wildcards.model]["pretrain"][key]

    return get


def pretrain_yaml(wildcards):
    """The model's pretrain YAML; a relative path is relative to the workflow."""
    return str(ROOT / MODELS[wildcards.model]["pretrain"]["config"])


def pretrain_data(wildcards):
    """The wiki MindRecord the model is pretrained on."""
    seq = MODELS[wildcards.model]["pretrain"]["seq_length"]
    return f"results/pretrain/{wildcards.model}/wiki_{seq}.mindrecord"


def pretrain_title(wildcards):
    """Params function: the title of the model's pretraining loss plot."""
    return f"{wildcards.model} pretraining"


def run_title(wildcards):
    """Params function: the title of the run's plots."""
    return wildcards.run


def model_wiki_text(wildcards):
    """Params function: the wiki text in the (tiny) model's folder."""
    return f"{model_dir(wildcards)}/{TEXT_FILE}"


def weights_input(wildcards, input):
    """Params function: the job's `weights` input (a checkpoint file)."""
    return input.weights


def data_input(wildcards, input):
    """Params function: the job's `data` input (the file it preprocesses)."""
    return input.data


def packed_rows(wildcards):
    """Params function: whether the job's MindRecord is the packed one."""
    return wildcards.packing == ".packed"


def tiny_options(wildcards):
    """make-tiny-model options (TinySpec field -> value) from the model's `tiny:`."""
    return MODELS[wildcards.model]["tiny"]


def dataset_input(wildcards):
    """Input of split_dataset: the alpaca file, or the tiny model folder holding it."""
    spec = DATASETS[wildcards.dataset]
    if "tiny_model" in spec:
        return {"source": hf_dir(spec["tiny_model"])}
    return {"source": dataset_json(wildcards.dataset)}


def job_dataset(wildcards):
    """The dataset a job works on: its {dataset}, or the dataset of its {run}."""
    if "dataset" in wildcards.keys():
        return wildcards.dataset
    return RUNS[wildcards.run]["dataset"]


def em_input(wildcards):
    """Input of the exact-match rules: the held-out records, or the tiny model
    folder holding them."""
    dataset = job_dataset(wildcards)
    spec = DATASETS[dataset]
    if "tiny_model" in spec:
        return {"source": hf_dir(spec["tiny_model"])}
    return {"source": em_records(dataset)}


def job_em_records(wildcards):
    """Params function: the alpaca records the job scores exact match on."""
    return em_records(job_dataset(wildcards))


def dataset_alpaca(wildcards):
    """The alpaca JSON of the job's {dataset}."""
    return dataset_json(wildcards.dataset)


def run_finetune_yaml(wildcards):
    """The run's finetune YAML; a relative path is relative to the workflow."""
    return str(ROOT / RUNS[wildcards.run]["finetune_config"])


def run_train_data(wildcards):
    """The MindRecord the run trains on."""
    return mindrecord(wildcards.run, "train")


def run_eval_data(wildcards):
    """The MindRecord the run is evaluated on."""
    return mindrecord(wildcards.run, "eval")


def run_train_alpaca(wildcards):
    """The alpaca records the run trains on (before conversion)."""
    return f"results/data/{RUNS[wildcards.run]['dataset']}/train/alpaca.json"


def run_base_metrics(wildcards):
    """The evaluation of the run's model before fine-tuning."""
    return base_metrics(wildcards.run)


def run_base_em(wildcards):
    """The exact match of the run's model before fine-tuning."""
    return base_em(wildcards.run)


def run_mpi(wildcards):
    """`srun` for a run on several nodes (one msrun per node), else nothing."""
    return "srun" if RUNS[wildcards.run]["nodes"] > 1 else ""


# ---- targets


def run_results(run):
    """What a run computes: metrics before and after, checkpoint, samples."""
    return [
        base_metrics(run),
        base_em(run),
        f"results/{run}/ckpt",
        f"results/{run}/eval/metrics.json",
        f"results/{run}/eval/em.json",
        f"results/{run}/eval/samples.json",
    ]


def run_targets(run):
    """Everything a run produces: checkpoint, metrics, samples, report items."""
    return [
        f"results/{run}/ckpt",
        f"results/{run}/eval/metrics.json",
        f"results/report/{run}/loss.png",
        f"results/report/{run}/eval.png",
        f"results/report/{run}/em.html",
        f"results/report/{run}/samples.html",
        f"results/report/{run}/plan.html",
    ]


def report_benchmarks(wildcards):
    """Input function: the benchmark files of every job behind the demo runs'
    results, each once, taken from the rules' own `benchmark:` directives."""
    targets = [t for run in config["demo_runs"] for t in run_results(run)]
    return upstream_benchmarks(workflow.rules, targets)


def report_stats():
    """Stats files of the MindRecords the demo runs (and their models' pretraining)
    train and evaluate on."""
    files = [
        f"{mindrecord(run, split)}.stats.json"
        for run in config["demo_runs"]
        for split in ("train", "eval")
    ]
    for run in config["demo_runs"]:
        model = RUNS[run]["model"]
        if "pretrain" in MODELS[model]:
            files.append(f"{pretrain_data(SimpleNamespace(model=model))}.stats.json")
    return list(dict.fromkeys(files))


def demo_targets():
    targets = [t for run in config["demo_runs"] for t in run_targets(run)]
    models = dict.fromkeys(RUNS[run]["model"] for run in config["demo_runs"])
    targets += [
        f"results/report/pretrain/{m}/loss.png"
        for m in models
        if "pretrain" in MODELS[m]
    ]
    return targets + [
        "results/report/data_stats.html",
        "results/report/benchmarks.html",
        "results/report/config.yaml",
    ]

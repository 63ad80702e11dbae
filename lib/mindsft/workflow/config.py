"""Checks on config/config.yaml that a JSON schema cannot express (references
between sections, what a dataset holds, what a run's finetune YAML becomes),
made when Snakemake loads the workflow (`snakemake -n` included), and the
finetune YAML a run actually trains with."""

import copy
from pathlib import Path

import yaml

from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError
from mindsft.files import read_json, read_yaml
from mindsft.keys import is_near_miss


def dataset_records(spec: dict) -> tuple:
    """(record count, where it comes from) of a dataset, where it is known before
    any job runs: a local `path` that exists (read now), or the tiny demo's fixed
    count; (None, None) for a `url` (checked when the split job reads the file)."""
    if "tiny_model" in spec:
        from mindsft.tiny import DEMO_RECORDS

        return DEMO_RECORDS, "the tiny demo's alpaca_demo.json"
    path = spec.get("path")
    if path is not None and Path(path).is_file():
        return len(read_json(path, expect=list)), str(path)
    return None, None


def check_datasets(models: dict, datasets: dict) -> None:
    """tiny_model names a tiny model; eval_records leaves records to train on."""
    for name, ds in datasets.items():
        tiny = ds.get("tiny_model")
        if tiny is not None and "tiny" not in models.get(tiny, {}):
            raise MindsftError(
                f"config: datasets.{name}.tiny_model: {tiny!r} is not a model with `tiny:`"
                f" (models: {', '.join(models)})"
            )
        records, where = dataset_records(ds)
        if records is not None and ds["eval_records"] >= records:
            raise MindsftError(
                f"config: datasets.{name}.eval_records: {ds['eval_records']} leaves nothing to "
                f"train on ({records} records in {where})"
            )


def check_overrides(where: str, settings: dict, root) -> None:
    """A run's finetune YAML (or a model's pretrain YAML), `settings` its entry in
    config.yaml (`where`, e.g. runs.NAME), exists and, with its seq_length and
    overrides applied, every override names a key the YAML has and the result
    reads as a finetune config."""
    from mindsft.train.config import parse_finetune_config

    key = "finetune_config" if "finetune_config" in settings else "config"
    yaml_path = settings[key]
    if not (Path(root) / yaml_path).is_file():
        raise MindsftError(f"config: {where}.{key}: {yaml_path} does not exist")
    source = f"config: {where}.overrides ({yaml_path})"
    tree = resolve_finetune_yaml(Path(root) / yaml_path, settings["seq_length"], {})
    for dotted, value in (settings.get("overrides") or {}).items():
        set_dotted(tree, dotted, value, source=source)
    parse_finetune_config(tree, f"{yaml_path} with {where}.overrides")


def check_config(config: dict, root) -> None:
    """Raise MindsftError naming the key when a run, dataset or demo entry
    refers to something that is not there, a dataset holds no more records than
    it holds out, or a run's overrides do not fit its finetune YAML."""
    models, datasets, runs = config["models"], config["datasets"], config["runs"]
    check_datasets(models, datasets)
    for name, run in runs.items():
        for key, known in (("model", models), ("dataset", datasets)):
            if run[key] not in known:
                raise MindsftError(
                    f"config: runs.{name}.{key}: {run[key]!r} is not defined"
                    f" (known: {', '.join(known)})"
                )
        check_overrides(f"runs.{name}", run, root)
    for name, model in models.items():
        pretrain = model.get("pretrain")
        if pretrain is not None:
            check_overrides(f"models.{name}.pretrain", pretrain, root)
    for name in config["demo_runs"]:
        if name not in runs:
            raise MindsftError(
                f"config: demo_runs: {name!r} is not a run (runs: {', '.join(runs)})"
            )


def set_dotted(tree: dict, dotted: str, value, *, source: str) -> None:
    """Set `a.b.c` in a nested dict; every parent key must already exist, so a
    typo is an error rather than a silently ignored new key."""
    node = tree
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            where = ".".join(parts[: i + 1])
            raise MindsftError(f"{source}: override {dotted!r}: {where!r} is not a section")
        node = node[part]
    if parts[-1] not in node:
        close = [k for k in node if is_near_miss(parts[-1], str(k))]
        meant = f"; did you mean {'.'.join([*parts[:-1], close[0]])}?" if close else ""
        raise MindsftError(
            f"{source}: override {dotted!r}: no such key in the finetune YAML{meant}"
        )
    node[parts[-1]] = value


def resolve_finetune_yaml(src, seq_length: int, overrides: dict) -> dict:
    """The finetune YAML `src` with the run's seq_length and overrides applied."""
    tree = read_yaml(src)
    if not isinstance(tree.get("model", {}).get("model_config"), dict):
        raise MindsftError(f"{src}: no model.model_config section")
    tree = copy.deepcopy(tree)
    tree["model"]["model_config"]["seq_length"] = seq_length
    for key, value in (overrides or {}).items():
        set_dotted(tree, key, value, source=str(src))
    return tree


def write_resolved_yaml(src, out, seq_length: int, overrides: dict) -> None:
    """Write the resolved finetune YAML (see resolve_finetune_yaml) atomically."""
    tree = resolve_finetune_yaml(src, seq_length, overrides)
    with atomic_output(out) as tmp:
        Path(tmp).write_text(
            f"# resolved from {src} by the mindsft workflow\n"
            + yaml.safe_dump(tree, sort_keys=False)
        )


def write_config(config: dict, out) -> None:
    """Write the validated workflow config (schema defaults filled in) as YAML."""
    with atomic_output(out) as tmp:
        Path(tmp).write_text(yaml.safe_dump(dict(config), sort_keys=False))


def schema_error(config: dict, schema_path) -> str:
    """One line naming the config key that breaks the schema (the best match of
    jsonschema's errors), or '' when the config is valid."""
    import jsonschema

    schema = read_yaml(schema_path)
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(config)
    )
    if error is None:
        return ""
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"config: {where}: {error.message}"

"""PEFT adapters both ways, against real PEFT and transformers: an exported adapter
loads in PeftModel with no missing or unexpected keys and gives mindsft's logits; an
adapter PEFT made imports, merges as PEFT's merge_and_unload does and loads into
mindsft's LoRA model; bad inputs stop the CLI with one line and leave nothing."""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
import yaml
from mindsft.cli import main
from mindsft.convert.ckpt import iter_ckpt
from mindsft.convert.llama import convert_hf_to_ms
from mindsft.convert.names import ms_to_hf
from mindsft.models.config import LlamaConfig
from mindsft.models.llama import LlamaForCausalLM
from mindsft.models.loading import load_weights
from mindsft.pet import peft as fmt
from mindsft.pet.config import LORA_A, LORA_B, LoraConfig
from mindsft.pet.lora import freeze_base, inject_lora, select_targets

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[2]
HF_SHAPE = {
    "vocab_size": 96,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
ALL_LINEAR = ".*wq|.*wk|.*wv|.*wo|.*w1|.*w2|.*w3|lm_head"
IDS = np.random.default_rng(5).integers(3, 96, (2, 16)).astype(np.int32)


# ---- fixtures -------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_base(tmp_path_factory) -> Path:
    """A seeded random HF Llama folder (norm weights randomised too)."""
    folder = tmp_path_factory.mktemp("hf_base")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**HF_SHAPE))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.2)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def base_ckpt(hf_base, tmp_path_factory) -> Path:
    """The HF base converted by mindsft's real converter."""
    path = tmp_path_factory.mktemp("base") / "base.ckpt"
    convert_hf_to_ms(hf_base, path)
    return path


@pytest.fixture
def load_hf(hf_base):
    def load():
        model = transformers.AutoModelForCausalLM.from_pretrained(hf_base, dtype=torch.float32)
        return model.eval()

    return load


@pytest.fixture
def write_yaml(hf_base):
    """A finetune YAML for the HF base with the given pet_config values."""

    def write(path: Path, **pet) -> Path:
        model_config = LlamaConfig.from_hf(hf_base).to_dict()
        model_config["pet_config"] = {"pet_type": "lora", **pet}
        path.write_text(yaml.safe_dump({"model": {"model_config": model_config}}))
        return path

    return write


@pytest.fixture
def lora_run(base_ckpt, write_yaml, tmp_path):
    """A mindsft LoRA model with non-zero B, saved as the trainer saves (A/B, optimizer
    state, position) in a run folder whose newest checkpoint is step 2; returns
    (yaml, run folder, newest checkpoint, model)."""

    def make(target_modules=ALL_LINEAR, rank=4, alpha=8.0):
        yaml_path = write_yaml(
            tmp_path / "lora.yaml",
            lora_rank=rank,
            lora_alpha=alpha,
            lora_dropout=0.05,
            target_modules=target_modules,
        )
        net = LlamaForCausalLM(LlamaConfig.from_hf(HF_SHAPE))
        load_weights(net, base_ckpt)
        inject_lora(net, LoraConfig(rank, alpha, 0.05, target_modules), seed=3)
        freeze_base(net)
        rank_dir = tmp_path / "run" / "checkpoint" / "rank_0"
        rank_dir.mkdir(parents=True)
        rng = np.random.default_rng(7)
        for step in (1, 2):
            for p in net.trainable_params():
                if p.name.endswith(LORA_B):
                    p.set_data(ms.Tensor(rng.normal(0, 0.2, p.shape).astype(np.float32)))
            records = [{"name": p.name, "data": p} for p in net.trainable_params()]
            records += [
                {"name": f"adam_m.{p.name}", "data": ms.Tensor(np.zeros(p.shape, np.float32))}
                for p in net.trainable_params()
            ]
            records += [
                {"name": k, "data": ms.Tensor(np.int32(v))}
                for k, v in (("epoch_num", 0), ("step_num", step), ("global_step", step))
            ]
            path = rank_dir / f"tiny_rank_0-1_{step}.ckpt"
            ms.save_checkpoint(records, str(path))
            # step 1 is the newer file: a run folder exports its newest step, not file
            stamp = time.time_ns() - step * 10**10
            os.utime(path, ns=(stamp, stamp))
        net.set_train(False)
        return yaml_path, tmp_path / "run", path, net

    return make


@pytest.fixture(scope="module", params=["safetensors", "bin_rslora"])
def peft_adapter(request, hf_base, tmp_path_factory):
    """An adapter PEFT itself made (random non-zero B) on the HF base, with its logits
    on IDS and its merge_and_unload() state dict."""
    rslora = request.param == "bin_rslora"
    torch.manual_seed(11)
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_base, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.05,
        target_modules=targets[: 4 if rslora else 7],
        use_rslora=rslora,
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(hf, config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.2)
    model.eval()
    folder = tmp_path_factory.mktemp(f"peft_{request.param}")
    model.save_pretrained(folder, safe_serialization=not rslora)
    with torch.no_grad():
        logits = model(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
        merged = {k: v.numpy().copy() for k, v in model.merge_and_unload().state_dict().items()}
    return folder, logits, merged


class Captured:
    """Python warnings and transformers/peft log records raised inside the block."""

    def __enter__(self):
        self.messages = []
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        self._handler = logging.Handler(logging.WARNING)
        self._handler.emit = lambda record: self.messages.append(record.getMessage())
        for name in ("transformers", "peft"):
            logging.getLogger(name).addHandler(self._handler)
        return self

    def __exit__(self, *exc):
        for name in ("transformers", "peft"):
            logging.getLogger(name).removeHandler(self._handler)
        self.messages += [str(w.message) for w in self._caught]
        return self._warnings.__exit__(*exc)


def run_cli(*argv, prefix=()):
    """`mindsft ARGV` in a subprocess with this checkout's sources first."""
    env = dict(
        os.environ, PYTHONPATH=f"{ROOT / 'lib'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    )
    cmd = [*prefix, sys.executable, "-m", "mindsft.cli", *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def ms_logits(net) -> np.ndarray:
    return net(ms.Tensor(IDS)).asnumpy()


# ---- the name maps ----------------------------------------------------------------
@pytest.mark.parametrize(
    "target", [ALL_LINEAR, ".*wq|.*wv", r"model\.layers\.1\.attention\.wo|.*w2", "lm_head"]
)
def test_module_selection_from_the_name_map_equals_inject_lora_on_the_real_model(target):
    config = LlamaConfig.from_hf(HF_SHAPE)
    selected = fmt.select_mindformers(target, fmt.linear_modules(config))
    assert selected == select_targets(LlamaForCausalLM(config), target)
    hf = fmt.select_peft(fmt.peft_target_modules(selected, 2), fmt.hf_linear_paths(2))
    assert hf == [fmt.hf_module(m) for m in selected]  # PEFT's target_modules selects the same
    regex = fmt.mindformers_target_modules(selected, 2)
    assert select_targets(LlamaForCausalLM(config), regex) == selected


# ---- export -------------------------------------------------------------------------
@pytest.mark.parametrize("target", [ALL_LINEAR, r".*wq|model\.layers\.1\.feed_forward\.w2"])
def test_exported_adapter_loads_in_peft_without_key_warnings_and_gives_mindsft_logits(
    target, lora_run, load_hf, tmp_path, capsys
):
    yaml_path, run, _, net = lora_run(target)
    out = tmp_path / "adapter"
    argv = ["export-adapter", "--config", yaml_path, "--lora_checkpoint", run]
    assert main([*map(str, argv), "--output_dir", str(out)]) == 0
    assert "wrote a PEFT LoRA adapter" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [fmt.CONFIG, fmt.WEIGHTS]
    with Captured() as caught:
        model = peft.PeftModel.from_pretrained(load_hf(), out)
    assert not [m for m in caught.messages if re.search("missing|unexpected", m, re.I)]
    result = model.load_adapter(out, adapter_name="again")
    assert result.missing_keys == [] and result.unexpected_keys == []
    model.set_adapter("default")
    lora_layers = [m for m in model.modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    assert len(lora_layers) == len(select_targets(net, target))
    with torch.no_grad():
        want = model(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
    got = ms_logits(net)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(got - ms_logits_base(net)).max() > 1e-2  # the adapter is not a no-op


def ms_logits_base(net) -> np.ndarray:
    """The LoRA model's logits with every B zeroed (restored afterwards)."""
    saved = {}
    for p in net.trainable_params():
        if p.name.endswith(LORA_B):
            saved[p.name] = p.asnumpy().copy()
            p.set_data(ms.Tensor(np.zeros(p.shape, np.float32)))
    logits = ms_logits(net)
    for p in net.trainable_params():
        if p.name in saved:
            p.set_data(ms.Tensor(saved[p.name]))
    return logits


@pytest.fixture
def tiny_mindrecord(tmp_path) -> Path:
    """A qa MindRecord of 8 seeded rows for the HF base (seq_length 64, all labelled)."""
    from mindspore.mindrecord import FileWriter

    path = tmp_path / "train.mindrecord"
    writer = FileWriter(str(path), shard_num=1, overwrite=True)
    column = {"type": "int32", "shape": [-1]}
    writer.add_schema({"input_ids": column, "labels": column})
    rows = np.random.default_rng(0).integers(3, 96, (8, 65)).astype(np.int32)
    writer.write_raw_data([{"input_ids": r, "labels": r} for r in rows])
    writer.commit()
    return path


def test_a_run_of_mindsft_finetune_exports_to_peft_with_the_trained_logits(
    tiny_mindrecord, base_ckpt, write_yaml, load_hf, tmp_path, capsys
):
    target = ".*wq|.*wv|.*w2"
    yaml_path = write_yaml(
        tmp_path / "lora.yaml", lora_rank=4, lora_alpha=8, lora_dropout=0.1, target_modules=target
    )
    raw = yaml.safe_load(yaml_path.read_text())
    raw["runner_config"] = {"epochs": 1, "batch_size": 2}
    raw["optimizer"] = {"type": "AdamWeightDecay", "learning_rate": 0.05}
    raw["callbacks"] = [{"type": "CheckpointMonitor", "prefix": "tiny", "save_checkpoint_steps": 2}]
    raw["context"] = {"mode": 1}
    yaml_path.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    argv = ["finetune", "--config", yaml_path, "--train_dataset_dir", tiny_mindrecord]
    assert main([str(a) for a in [*argv, "--load_checkpoint", base_ckpt, "--output_dir", run]]) == 0
    newest = run / "checkpoint" / "rank_0" / "tiny_rank_0-1_4.ckpt"
    assert newest.is_file()
    out = tmp_path / "adapter"
    argv = ["export-adapter", "--config", yaml_path, "--lora_checkpoint", run, "--output_dir", out]
    assert main([str(a) for a in argv]) == 0

    net = LlamaForCausalLM(LlamaConfig.from_hf(HF_SHAPE))
    load_weights(net, base_ckpt)
    inject_lora(net, LoraConfig(4, 8, 0.1, target))
    not_loaded, _ = ms.load_param_into_net(net, ms.load_checkpoint(str(newest)))
    assert not [n for n in not_loaded if n.endswith((LORA_A, LORA_B))]
    net.set_train(False)
    with Captured() as caught:
        model = peft.PeftModel.from_pretrained(load_hf(), out)
    assert not [m for m in caught.messages if re.search("missing|unexpected", m, re.I)]
    with torch.no_grad():
        want = model(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
    assert np.abs(ms_logits(net) - want).max() < 1e-4
    assert np.abs(ms_logits(net) - ms_logits_base(net)).max() > 1e-3  # training moved B


def test_mindformers_lora_yaml_exports_as_peft_names_for_all_32_layers(mindformers_configs):
    from mindsft.pet.peft_export import read_lora_yaml

    config, lora = read_lora_yaml(mindformers_configs / "lora_llama2_7b.yaml")
    selected = fmt.select_mindformers(lora.target_modules, fmt.linear_modules(config))
    assert len(selected) == 4 * 32
    assert fmt.peft_target_modules(selected, 32) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert fmt.linear_modules(config)["model.layers.31.feed_forward.w2"] == (
        "model.layers.31.mlp.down_proj",
        (4096, 11008),
    )


def test_adapter_config_is_what_peft_itself_writes(lora_run, tmp_path):
    yaml_path, _, ckpt, _ = lora_run(".*wq|.*wv|lm_head")
    out = tmp_path / "adapter"
    argv = ["export-adapter", "--config", yaml_path, "--lora_checkpoint", ckpt]
    assert main([*map(str, argv), "--output_dir", str(out), "--base_model_name_or_path", "b"]) == 0
    ours = json.loads((out / fmt.CONFIG).read_text())
    assert ours["target_modules"] == ["q_proj", "v_proj", "lm_head"]
    reference = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.05,
        target_modules=ours["target_modules"],
        task_type="CAUSAL_LM",
        base_model_name_or_path="b",
        inference_mode=True,
    )
    reference.save_pretrained(tmp_path / "reference")
    theirs = json.loads((tmp_path / "reference" / fmt.CONFIG).read_text())
    theirs["target_modules"] = sorted(theirs["target_modules"])
    assert {**ours, "target_modules": sorted(ours["target_modules"])} == theirs


# ---- import -------------------------------------------------------------------------
def import_adapter(folder, out, capsys, config=None) -> dict:
    argv = ["import-adapter", "--adapter_dir", str(folder), "--output_path", str(out)]
    assert main(argv + (["--config", str(config)] if config else [])) == 0
    return yaml.safe_load(capsys.readouterr().out)["pet_config"]


def test_imported_adapter_merges_as_peft_merge_and_unload(
    peft_adapter, base_ckpt, hf_base, write_yaml, tmp_path, capsys
):
    folder, _, merged_by_peft = peft_adapter
    pet = import_adapter(folder, tmp_path / "lora.ckpt", capsys, config=hf_base)
    names = [name for name, _ in iter_ckpt(tmp_path / "lora.ckpt")]
    assert names[:2] == [
        f"model.layers.0.attention.wq.{LORA_A}",
        f"model.layers.0.attention.wq.{LORA_B}",
    ]
    yaml_path = write_yaml(
        tmp_path / "imported.yaml", **{k: v for k, v in pet.items() if k != "pet_type"}
    )
    argv = ["merge-lora", "--config", yaml_path, "--base_checkpoint", base_ckpt]
    argv += ["--lora_checkpoint", tmp_path / "lora.ckpt", "--output_path", tmp_path / "merged.ckpt"]
    assert main([str(a) for a in argv]) == 0
    merged = dict(iter_ckpt(tmp_path / "merged.ckpt"))
    assert {ms_to_hf(n) for n in merged} == set(merged_by_peft)
    for name, array in merged.items():
        assert np.abs(array - merged_by_peft[ms_to_hf(name)]).max() <= 1e-5, name
    changed = [n for n, a in iter_ckpt(base_ckpt) if not np.array_equal(a, merged[n])]
    assert len(changed) == len(names) // 2  # every adapted weight, nothing else


def test_mindsft_lora_model_starts_from_an_imported_adapter_with_peft_logits(
    peft_adapter, base_ckpt, tmp_path, capsys
):
    folder, peft_logits, _ = peft_adapter
    pet = import_adapter(folder, tmp_path / "lora.ckpt", capsys)
    net = LlamaForCausalLM(LlamaConfig.from_hf(HF_SHAPE))
    load_weights(net, base_ckpt)
    inject_lora(net, LoraConfig.from_pet_config(pet), seed=0)
    freeze_base(net)
    not_loaded, unused = ms.load_param_into_net(
        net, ms.load_checkpoint(str(tmp_path / "lora.ckpt"))
    )
    assert not unused
    assert not [n for n in not_loaded if n.endswith((LORA_A, LORA_B))]
    assert sorted(p.name for p in net.trainable_params()) == sorted(
        name for name, _ in iter_ckpt(tmp_path / "lora.ckpt")
    )
    net.set_train(False)
    assert np.abs(ms_logits(net) - peft_logits).max() < 1e-4


def test_rslora_scaling_becomes_alpha_times_sqrt_r(peft_adapter, tmp_path, capsys):
    folder, _, _ = peft_adapter
    pet = import_adapter(folder, tmp_path / "lora.ckpt", capsys)
    rslora = json.loads((folder / fmt.CONFIG).read_text())["use_rslora"]
    assert pet["lora_rank"] == 4 and pet["lora_dropout"] == 0.05
    assert pet["lora_alpha"] / 4 == pytest.approx(8 / 2 if rslora else 8 / 4, rel=1e-12)
    assert pet["target_modules"] == (
        ".*wq|.*wk|.*wv|.*wo" if rslora else ".*wq|.*wk|.*wv|.*wo|.*w1|.*w2|.*w3"
    )


# ---- both ways ------------------------------------------------------------------------
def test_export_then_import_gives_back_the_same_matrices_bit_for_bit(lora_run, tmp_path, capsys):
    target = r".*wk|model\.layers\.0\.feed_forward\.w3|lm_head"
    yaml_path, _, ckpt, net = lora_run(target)
    argv = ["export-adapter", "--config", yaml_path, "--lora_checkpoint", ckpt]
    assert main([*map(str, argv), "--output_dir", str(tmp_path / "adapter")]) == 0
    capsys.readouterr()
    pet = import_adapter(tmp_path / "adapter", tmp_path / "back.ckpt", capsys, config=yaml_path)
    original = {
        n: a for n, a in iter_ckpt(ckpt) if n.endswith((LORA_A, LORA_B)) and "adam" not in n
    }
    back = dict(iter_ckpt(tmp_path / "back.ckpt"))
    assert list(back) == list(original)
    assert all(back[n].tobytes() == original[n].tobytes() for n in back)
    assert select_targets(net, pet["target_modules"]) == select_targets(net, target)
    assert (pet["lora_rank"], pet["lora_alpha"], pet["lora_dropout"]) == (4, 8.0, 0.05)


def test_a_mindformers_checkpoint_of_base_and_lora_exports_its_lora_only(
    lora_run, base_ckpt, tmp_path
):
    from mindsft.convert.ckpt import CkptWriter

    yaml_path, _, ckpt, _ = lora_run(".*wq|.*wo")
    combined = tmp_path / "base_and_lora.ckpt"
    lora = [(n, a) for n, a in iter_ckpt(ckpt) if n.startswith("model.")]
    with CkptWriter(combined) as out:
        for name, array in [*iter_ckpt(base_ckpt), *lora]:
            out.write(name, array)
    for source, out in ((ckpt, "from_run"), (combined, "from_combined")):
        argv = ["export-adapter", "--config", yaml_path, "--lora_checkpoint", source]
        assert main([*map(str, argv), "--output_dir", str(tmp_path / out)]) == 0
    for name in (fmt.WEIGHTS, fmt.CONFIG):
        assert (tmp_path / "from_run" / name).read_bytes() == (
            tmp_path / "from_combined" / name
        ).read_bytes()


def test_import_then_export_gives_peft_its_own_tensors(peft_adapter, write_yaml, tmp_path, capsys):
    folder, _, _ = peft_adapter
    pet = import_adapter(folder, tmp_path / "lora.ckpt", capsys)
    yaml_path = write_yaml(tmp_path / "y.yaml", **{k: v for k, v in pet.items() if k != "pet_type"})
    argv = ["export-adapter", "--config", yaml_path, "--lora_checkpoint", tmp_path / "lora.ckpt"]
    assert main([*map(str, argv), "--output_dir", str(tmp_path / "again")]) == 0
    from safetensors.torch import load_file

    if (folder / fmt.WEIGHTS).is_file():
        theirs = load_file(folder / fmt.WEIGHTS)
    else:
        theirs = torch.load(folder / fmt.WEIGHTS_BIN, weights_only=True)
    ours = load_file(tmp_path / "again" / fmt.WEIGHTS)
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


# ---- bad input ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_adapter(hf_base, tmp_path_factory) -> Path:
    """A rank-2 adapter PEFT made on q_proj and v_proj of the HF base."""
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_base, dtype=torch.float32)
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    folder = tmp_path_factory.mktemp("small_adapter")
    peft.get_peft_model(hf, config).save_pretrained(folder)
    return folder


@pytest.fixture
def adapter(small_adapter, tmp_path) -> Path:
    """An editable copy of the small adapter."""
    return Path(shutil.copytree(small_adapter, tmp_path / "adapter"))


def edit_config(folder: Path, **changes) -> None:
    path = folder / fmt.CONFIG
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def edit_tensors(folder: Path, rename=lambda k: k, add=None) -> None:
    from safetensors.torch import load_file, save_file

    tensors = {rename(k): v for k, v in load_file(folder / fmt.WEIGHTS).items()}
    save_file({**tensors, **(add or {})}, folder / fmt.WEIGHTS, metadata={"format": "pt"})


def assert_refused(result, output: Path, *words) -> None:
    """Exit 2, one line on stderr holding `words`, and nothing at or beside `output`."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert str(word) in lines[0], lines[0]
    assert not output.exists()
    if output.parent.is_dir():
        assert not [p for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")]


def test_adapter_for_a_base_of_other_shapes_is_refused(adapter, hf_base, tmp_path):
    other = tmp_path / "other_base"
    other.mkdir()
    config = json.loads((hf_base / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "hidden_size": 64, "head_dim": 16}))
    out = tmp_path / "lora.ckpt"
    result = run_cli(
        "import-adapter", "--adapter_dir", adapter, "--output_path", out, "--config", other
    )
    assert_refused(result, out, adapter / fmt.WEIGHTS, "self_attn.q_proj", "hidden_size 64")


def test_adapter_on_a_module_llama_lacks_is_refused(adapter, tmp_path):
    edit_tensors(adapter, rename=lambda k: k.replace("v_proj", "qkv_proj"))
    out = tmp_path / "lora.ckpt"
    result = run_cli("import-adapter", "--adapter_dir", adapter, "--output_path", out)
    assert_refused(result, out, adapter / fmt.WEIGHTS, "qkv_proj.lora_A.weight")


def test_target_modules_that_name_no_module_are_refused_both_ways(
    adapter, lora_run, write_yaml, tmp_path
):
    edit_config(adapter, target_modules=["q_proj", "v_proj", "query_key_value"])
    out = tmp_path / "lora.ckpt"
    result = run_cli("import-adapter", "--adapter_dir", adapter, "--output_path", out)
    assert_refused(result, out, adapter / fmt.CONFIG, "'query_key_value'", "names no module")

    _, _, ckpt, _ = lora_run(".*wq")
    yaml_path = write_yaml(tmp_path / "hf_names.yaml", lora_rank=4, target_modules=".*q_proj")
    out = tmp_path / "exported"
    argv = ["--config", yaml_path, "--lora_checkpoint", ckpt, "--output_dir", out]
    result = run_cli("export-adapter", *argv)
    assert_refused(result, out, yaml_path, "target_modules '.*q_proj' matches no module")


@pytest.mark.parametrize("damage", ["missing", "truncated", "config"])
def test_missing_or_corrupt_adapter_files_are_refused(damage, adapter, tmp_path):
    if damage == "missing":
        (adapter / fmt.WEIGHTS).unlink()
        words = [adapter, fmt.WEIGHTS]
    elif damage == "truncated":
        data = (adapter / fmt.WEIGHTS).read_bytes()
        (adapter / fmt.WEIGHTS).write_bytes(data[: len(data) - 9])
        words = [adapter / fmt.WEIGHTS, "truncated"]
    else:
        (adapter / fmt.CONFIG).write_text('{"r": 2,')
        words = [adapter / fmt.CONFIG, "not valid JSON"]
    out = tmp_path / "lora.ckpt"
    result = run_cli("import-adapter", "--adapter_dir", adapter, "--output_path", out)
    assert_refused(result, out, *words)


@pytest.fixture
def read_only_dir(tmp_path):
    """(folder, command prefix) under which the folder cannot be written: a read-only
    tmpfs in a private mount namespace for root, else the folder's mode."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder, ()
        folder.chmod(0o755)
        return
    mount = 'mount -t tmpfs -o ro tmpfs "$1" && shift && exec "$@"'
    prefix = ("unshare", "-m", "sh", "-c", mount, "sh", str(folder))
    if subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("root, and no private mount namespace to make a read-only folder")
    yield folder, prefix


def test_read_only_output_locations_are_refused(read_only_dir, lora_run, small_adapter):
    folder, prefix = read_only_dir
    out = folder / "lora.ckpt"
    argv = ["import-adapter", "--adapter_dir", small_adapter, "--output_path", out]
    assert_refused(run_cli(*argv, prefix=prefix), out, out, "cannot write")
    yaml_path, run, _, _ = lora_run(".*wq")
    out = folder / "adapter"
    argv = ["export-adapter", "--config", yaml_path, "--lora_checkpoint", run, "--output_dir", out]
    assert_refused(run_cli(*argv, prefix=prefix), out, out, "cannot write")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"use_dora": True}, ["use_dora=True", "DoRA"]),
        ({"rank_pattern": {"q_proj": 4}}, ["rank_pattern", "per-module ranks"]),
        ({"alpha_pattern": {"q_proj": 8}}, ["alpha_pattern", "per-module alphas"]),
        ({"bias": "lora_only"}, ["bias='lora_only'", "biases"]),
        ({"modules_to_save": ["lm_head"]}, ["modules_to_save", "fully trained modules"]),
        ({"peft_type": "IA3"}, ["peft_type 'IA3'"]),
        ({"init_lora_weights": "pissa"}, ["init_lora_weights='pissa'", "base weights"]),
        ({"r": 4}, ["A [2, 32]", "r=4"]),
        ({"target_modules": ["q_proj"]}, ["does not select", "v_proj"]),
    ],
)
def test_what_mindsft_lora_cannot_represent_is_refused(changes, words, adapter, tmp_path, capsys):
    edit_config(adapter, **changes)
    out = tmp_path / "lora.ckpt"
    assert main(["import-adapter", "--adapter_dir", str(adapter), "--output_path", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not out.exists()


def test_layers_beyond_the_config_and_saved_base_weights_are_refused(
    adapter, hf_base, tmp_path, capsys
):
    out = tmp_path / "lora.ckpt"
    one_layer = tmp_path / "one_layer.json"
    config = json.loads((hf_base / "config.json").read_text())
    one_layer.write_text(json.dumps({**config, "num_hidden_layers": 1}))
    argv = ["import-adapter", "--adapter_dir", str(adapter), "--output_path", str(out)]
    assert main([*argv, "--config", str(one_layer)]) == 2
    assert "layer 1, but" in capsys.readouterr().err and not out.exists()
    head = "base_model.model.lm_head.base_layer.weight"
    edit_tensors(adapter, add={head: torch.zeros(96, 32)})
    assert main(argv) == 2
    assert "save_embedding_layers=False" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("yaml_pet", "words"),
    [
        ({"lora_rank": 8, "target_modules": ".*wq|.*wv"}, ["lora_rank 8", "A [4, 32]"]),
        ({"lora_rank": 4, "target_modules": ".*wq"}, ["has LoRA on model.layers.0.attention.wv"]),
        ({"lora_rank": 4, "target_modules": ".*wq|.*wv|.*wk"}, ["has no LoRA on", "attention.wk"]),
        (None, ["pet_config is missing"]),
    ],
)
def test_export_checks_the_checkpoint_against_the_yaml(
    yaml_pet, words, lora_run, write_yaml, tmp_path, capsys
):
    _, _, ckpt, _ = lora_run(".*wq|.*wv")
    yaml_path = tmp_path / "check.yaml"
    if yaml_pet is None:
        yaml_path.write_text(yaml.safe_dump({"model": {"model_config": dict(HF_SHAPE)}}))
    else:
        write_yaml(yaml_path, lora_alpha=8, **yaml_pet)
    out = tmp_path / "adapter"
    argv = ["export-adapter", "--config", str(yaml_path), "--lora_checkpoint", str(ckpt)]
    assert main([*argv, "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not out.exists()


def test_export_refuses_a_base_checkpoint_an_empty_run_and_a_foreign_folder(
    lora_run, base_ckpt, tmp_path, capsys
):
    yaml_path, _, ckpt, _ = lora_run(".*wq")
    argv = ["export-adapter", "--config", str(yaml_path), "--output_dir"]
    cases = [
        (base_ckpt, tmp_path / "a", "holds no LoRA matrices"),
        (tmp_path / "empty_run", tmp_path / "b", "no checkpoint/rank_0/*.ckpt"),
        (ckpt, tmp_path / "run", "is not an adapter folder"),  # the run folder itself
    ]
    (tmp_path / "empty_run").mkdir()
    for source, out, words in cases:
        assert main([*argv, str(out), "--lora_checkpoint", str(source)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert (tmp_path / "run" / "checkpoint").is_dir()  # left as it was

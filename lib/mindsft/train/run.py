"""`mindsft run`: MindFormers' run_mindformer.py with its flags as users type them,
and `train_run`, the library entry point of a training run.

    mindsft run --config C.yaml --run_mode {train,finetune,eval,predict} [flags]

Every flag left out keeps the YAML's value (run_mindformer.py's rule: `run_mode`,
`load_checkpoint`, `output_dir`, the datasets' `dataset_dir`, `use_parallel`,
`resume_training`, `do_eval`, `runner_config`, `seed`). The modes:
- train: pretraining on a wiki MindRecord (every token a target); without a
  checkpoint to load, from the config's seeded random initialisation;
- finetune: supervised fine-tuning on a qa MindRecord (`mindsft finetune` is
  this mode with its own required flags);
- eval: loss and perplexity of a checkpoint on a MindRecord (as `mindsft evaluate`);
- predict: continuations of --predict_data, --predict_batch_size rows at a time.
Training with `--use_parallel True` re-runs itself under msrun (`--worker_num N`),
or joins the job when msrun started it (MS_ROLE set)."""

import argparse
import sys
from pathlib import Path

from mindsft.atomic import check_writable
from mindsft.errors import MindsftError
from mindsft.train import launch
from mindsft.train.config import FinetuneConfig, load_finetune_config
from mindsft.train.signals import Stopped, StopSignals

MODES = ("train", "finetune", "eval", "predict")
# flags overriding runner_config and the seed: each names its TrainConfig field
TRAIN_OVERRIDES = ("epochs", "batch_size", "num_samples", "seed", "gradient_accumulation_steps")
# flags overriding the YAML's top level: each names its RunConfig field
RUN_OVERRIDES = (
    "run_mode",
    "load_checkpoint",
    "output_dir",
    "train_dataset_dir",
    "eval_dataset_dir",
    "use_parallel",
    "resume_training",
    "auto_trans_ckpt",
    "src_strategy_path_or_dir",
    "do_eval",
    "device_memory",
    "check_memory",
)
_NO_STRATEGY = "mindsft trains data-parallel only, so there is no sharding strategy"
# run_mindformer.py flags mindsft cannot honour, and why
UNSUPPORTED_FLAGS = {
    "register_path": "it loads external model code; mindsft runs its own Llama only",
    "options": "mindsft takes no key=value config overrides; edit the YAML",
    "modal_type": "multimodal predict is not supported",
    "adapter_id": "multi-adapter (SLoRA) predict is not supported",
    "strategy_load_checkpoint": _NO_STRATEGY,
    "transform_process_num": _NO_STRATEGY,
    "only_save_strategy": _NO_STRATEGY,
    "remote_save_url": "saving to OBS (AICC) is not supported",
    "trust_remote_code": "mindsft runs no remote code",
}
# run_mindformer.py flags accepted and reported: they change nothing on this engine
NO_EFFECT_FLAGS = {
    "sink_mode": "no data sinking on this engine; it does not change results",
    "profile": "the MindSpore profiler is not wired in; it does not change results",
}
RESULT_FILE = {"eval": "eval_result.json", "predict": "text_generation_result.jsonl"}


def say(message: str) -> None:
    print(f"mindsft run: {message}", file=sys.stderr, flush=True)


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mf_bool(value: str) -> bool:
    """A boolean flag as run_mindformer.py's str2bool reads it: true or false, any case."""
    word = str(value).strip().lower()
    if word not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")
    return word == "true"


def bool_or_name(value: str):
    """--resume_training as run_mindformer.py reads it: a boolean or a checkpoint name."""
    word = str(value).strip().lower()
    return word == "true" if word in ("true", "false") else value


# ---- the training modes -----------------------------------------------------
def train_run(
    cfg: FinetuneConfig, paths, rank=0, world_size=1, resume=False, say=None, stop=None
) -> dict:
    """Pretrain (`cfg.run.run_mode` "train": a wiki MindRecord) or fine-tune (a qa
    one) one worker of a run into `paths.output_dir`; return the trainer's summary.
    With `stop` (signals.StopSignals), a SIGTERM/SIGINT raises signals.Stopped at
    the next step boundary, after that step's checkpoint."""
    from mindsft.train.trainer import Trainer

    trainer = Trainer(cfg, paths, rank, world_size, say, stop=stop)
    trainer.setup()
    if resume:
        trainer.resume()
    return trainer.train()


def _required(value, flag: str, cfg: FinetuneConfig, key: str):
    if not value:
        raise MindsftError(f"--run_mode {cfg.run.run_mode} needs {flag} (or {key} in {cfg.source})")
    return value


def _child_argv(cfg: FinetuneConfig, args) -> list:
    """The `mindsft run` arguments every msrun worker gets: the settings resolved
    here, the launcher's flags left out."""
    run = cfg.run
    argv = ["run", "--config", str(args.config), "--run_mode", run.run_mode]
    paths = ("load_checkpoint", "train_dataset_dir", "eval_dataset_dir", "output_dir")
    for key in (*paths, "src_strategy_path_or_dir"):
        if getattr(run, key):
            argv += [f"--{key}", str(getattr(run, key))]
    for key in (*TRAIN_OVERRIDES, "mode"):
        if getattr(args, key, None) is not None:
            argv += [f"--{key}", str(getattr(args, key))]
    if run.device_memory:
        argv += ["--device_memory", run.device_memory]
    argv += ["--check_memory", str(run.check_memory)]
    argv += ["--use_parallel", "True", "--resume_training", str(bool(run.resume_training))]
    return argv + ["--auto_trans_ckpt", str(run.auto_trans_ckpt), "--do_eval", str(run.do_eval)]


def run_training(cfg: FinetuneConfig, args) -> int:
    """train / finetune: check the inputs, then train here, under msrun, or as
    one msrun worker."""
    from mindsft.data.reader import mindrecord_kind, require_kind
    from mindsft.train.datasets import dataset_kind
    from mindsft.train.trainer import RunPaths

    run = cfg.run
    worker_num = getattr(args, "worker_num", None)
    relaunch = launch.needs_msrun(run.use_parallel, worker_num)
    if not relaunch:  # join msrun's job, or refuse --use_parallel True without msrun
        rank, world = launch.init_workers(run.use_parallel, worker_num)
    data = _required(run.train_dataset_dir, "--train_dataset_dir", cfg, "train_dataset")
    needed = dataset_kind(run.run_mode)
    require_kind(data, mindrecord_kind(data), needed, f"--run_mode {run.run_mode}")
    if run.run_mode == "finetune":
        _required(run.load_checkpoint, "--load_checkpoint", cfg, "load_checkpoint")
    if isinstance(run.resume_training, str):
        raise MindsftError(
            f"--resume_training {run.resume_training}: resuming from a named checkpoint is not "
            "supported; True resumes from the newest checkpoint every rank has"
        )
    if run.do_eval:
        _required(run.eval_dataset_dir, "--eval_dataset_dir", cfg, "eval_dataset")
    if relaunch:
        return launch.relaunch(_child_argv(cfg, args), args, run.output_dir, _note)
    eval_data = run.eval_dataset_dir if run.do_eval else ""
    paths = RunPaths(data, run.load_checkpoint, run.output_dir, eval_data, run.auto_trans_ckpt)
    with launch.run_lock(run.output_dir, rank, _note), StopSignals() as stop:
        try:
            train_run(cfg, paths, rank, world, resume=bool(run.resume_training), stop=stop)
        except Stopped as exc:  # one line, and the exit status a signal gives
            _note(f"mindsft {getattr(args, 'command', 'run')}: {exc}")
            return 128 + exc.signum
    return 0


# ---- eval and predict ---------------------------------------------------------
def _works_here(cfg: FinetuneConfig) -> bool:
    """eval and predict run in one process: under msrun every worker joins the job
    and rank 0 does the work."""
    if not launch.in_msrun():
        if cfg.run.use_parallel:
            say(f"use_parallel: --run_mode {cfg.run.run_mode} runs in this one process")
        return True
    rank, _ = launch.init_workers(True)
    return rank == 0


def run_eval(cfg: FinetuneConfig, args) -> int:
    """eval: `mindsft evaluate` on the eval dataset, written to OUTPUT_DIR/eval_result.json."""
    from mindsft.inference.evaluate import evaluate_to_file

    run = cfg.run
    if run.metric != "PerplexityMetric":
        raise MindsftError(
            f"{cfg.source}: metric {run.metric}: --run_mode eval computes PerplexityMetric; "
            "for exact match and F1 use `mindsft evaluate --metric em_f1`"
        )
    data = _required(run.eval_dataset_dir, "--eval_dataset_dir", cfg, "eval_dataset")
    checkpoint = _required(run.load_checkpoint, "--load_checkpoint", cfg, "load_checkpoint")
    if _works_here(cfg):
        output = Path(run.output_dir) / RESULT_FILE["eval"]
        tc = cfg.train
        evaluate_to_file(args.config, checkpoint, data, output, tc.batch_size, tc.num_samples)
    return 0


def tokenizer_file(cfg: FinetuneConfig, checkpoint) -> Path:
    """processor.tokenizer.vocab_file, else tokenizer.model beside the checkpoint."""
    if cfg.run.vocab_file:
        return Path(cfg.run.vocab_file)
    beside = Path(checkpoint).parent / "tokenizer.model"
    if not beside.is_file():
        raise MindsftError(
            f"{cfg.source}: predict needs a tokenizer: set processor.tokenizer.vocab_file "
            f"or put tokenizer.model beside {checkpoint}"
        )
    return beside


def run_predict(cfg: FinetuneConfig, args) -> int:
    """predict: continuations of --predict_data, printed as MindFormers prints them
    and written to OUTPUT_DIR/text_generation_result.jsonl."""
    from mindsft.inference.predict import generation_settings, predict, read_prompts
    from mindsft.models.config import LlamaConfig

    prompts = read_prompts(getattr(args, "predict_data", None))
    batch_size = getattr(args, "predict_batch_size", None) or 1
    if batch_size < 1:
        raise MindsftError(f"--predict_batch_size {batch_size}: must be at least 1")
    checkpoint = _required(cfg.run.load_checkpoint, "--load_checkpoint", cfg, "load_checkpoint")
    settings = generation_settings(cfg.model_config, cfg.source, seed=cfg.train.seed)
    tokenizer = tokenizer_file(cfg, checkpoint)
    config = LlamaConfig.from_mindformers(cfg.model_config, where=f"{cfg.source}: model_config")
    if _works_here(cfg):
        output = Path(cfg.run.output_dir) / RESULT_FILE["predict"]
        predict(config, checkpoint, tokenizer, prompts, batch_size, settings, output)
    return 0


# ---- the command -----------------------------------------------------------------
def _check_flags(args) -> None:
    """Flags mindsft cannot honour are one line; flags that mean nothing here, a note."""
    for flag, why in UNSUPPORTED_FLAGS.items():
        if getattr(args, f"unsupported_{flag}", None) is not None:
            raise MindsftError(f"--{flag}: not supported ({why})")
    for flag, why in NO_EFFECT_FLAGS.items():
        if getattr(args, flag, None) is not None:
            say(f"--{flag} {getattr(args, flag)}: {why}")
    if getattr(args, "src_strategy_path_or_dir", None):
        say(f"--src_strategy_path_or_dir: {_NO_STRATEGY} to read; checkpoints load whole")
    import mindspore as ms

    current = ms.get_context("device_target")
    target = getattr(args, "device_target", None)
    if target is not None and target.lower() != current.lower():
        say(f"--device_target {target}: this MindSpore runs on {current}; running there")
    device_id = getattr(args, "device_id", None)
    if device_id is not None:
        if current == "CPU":
            say(f"--device_id {device_id}: the CPU target has no device ids; nothing to select")
        else:
            ms.set_context(device_id=device_id)


def resolve(args) -> FinetuneConfig:
    """The YAML at --config with the flags given laid over it."""
    cfg = load_finetune_config(args.config)
    for key in RUN_OVERRIDES:
        if getattr(args, key, None) is not None:
            setattr(cfg.run, key, getattr(args, key))
    for key in TRAIN_OVERRIDES:
        if getattr(args, key, None) is not None:
            setattr(cfg.train, key, getattr(args, key))
    if getattr(args, "mode", None) is not None:
        cfg.train.jit = args.mode == 0  # context.mode: 0 GRAPH, 1 PyNative
    if getattr(args, "do_sample", None) is not None:
        cfg.model_config["do_sample"] = args.do_sample
    if cfg.run.run_mode not in MODES:
        raise MindsftError(
            f"{cfg.source}: run_mode {cfg.run.run_mode!r}: expected one of {', '.join(MODES)} "
            "(--run_mode)"
        )
    return cfg


RUNNERS = {"train": run_training, "finetune": run_training, "eval": run_eval}
RUNNERS["predict"] = run_predict


def run_command(args) -> int:
    """`mindsft run` (and `mindsft finetune`): resolve the settings, run the mode."""
    if getattr(args, "output_dir", None) is not None:  # before MindSpore is even imported
        check_writable(args.output_dir, "dir")
    _check_flags(args)
    cfg = resolve(args)
    check_writable(cfg.run.output_dir, "dir")  # the YAML's, without --output_dir
    return RUNNERS[cfg.run.run_mode](cfg, args)


def add_memory_flags(parser) -> None:
    """The memory plan's flags, for training (see mindsft.plan.launch)."""
    parser.add_argument(
        "--device_memory",
        help="memory per device, e.g. 64GB (default: context.max_device_memory); the run "
        "refuses to start when its memory plan (on CPU: the CPU plan) needs more",
    )
    parser.add_argument(
        "--check_memory",
        type=mf_bool,
        help="False: start even when the memory plan says the run does not fit (default: True)",
    )


def add_msrun_flags(parser) -> None:
    """msrun's own flags, for training with --use_parallel True."""
    g = parser.add_argument_group("msrun (with --use_parallel True)")
    g.add_argument(
        "--worker_num",
        type=int,
        help="total workers; mindsft starts msrun when > 1 (default: none, for a process "
        "msrun started)",
    )
    g.add_argument(
        "--local_worker_num", type=int, help="workers on this node (default: worker_num)"
    )
    g.add_argument(
        "--master_addr", help="scheduler address for multi-node runs (default: 127.0.0.1)"
    )
    g.add_argument(
        "--master_port",
        type=int,
        default=8118,
        help="scheduler port (default: %(default)s; on one node a free one when it is taken)",
    )
    g.add_argument(
        "--node_rank", type=int, help="this node's rank in a multi-node run (default: 0)"
    )


YAMLS = "(default: the YAML's)"


def _add_run_flags(p) -> None:
    p.add_argument("--config", required=True, help="MindFormers YAML (train, finetune, ...)")
    p.add_argument("--run_mode", choices=MODES, help=f"what to run {YAMLS}")
    p.add_argument(
        "--load_checkpoint", help=f"checkpoint to start from, evaluate or predict with {YAMLS}"
    )
    p.add_argument(
        "--auto_trans_ckpt", type=mf_bool, help=f"True: reshard load_checkpoint if needed {YAMLS}"
    )
    p.add_argument("--src_strategy_path_or_dir", help=f"the checkpoint's sharding strategy {YAMLS}")
    p.add_argument(
        "--train_dataset_dir", help=f"train: wiki MindRecord; finetune: qa MindRecord {YAMLS}"
    )
    p.add_argument("--eval_dataset_dir", help=f"MindRecord evaluated (eval, --do_eval) {YAMLS}")
    p.add_argument(
        "--output_dir",
        help="checkpoint/, loss.jsonl, results (default: the YAML's, else ./output)",
    )
    p.add_argument("--use_parallel", type=mf_bool, help=f"True: data parallel under msrun {YAMLS}")
    p.add_argument(
        "--resume_training",
        type=bool_or_name,
        nargs="?",
        const=True,
        help=f"True: continue from the newest checkpoint, or a checkpoint's name {YAMLS}",
    )
    p.add_argument(
        "--do_eval", type=mf_bool, help=f"True: evaluate eval_dataset_dir while training {YAMLS}"
    )
    for key in TRAIN_OVERRIDES:
        p.add_argument(f"--{key}", type=int, help=f"runner setting {key} {YAMLS}")
    p.add_argument(
        "--mode", type=int, choices=(0, 1), help=f"0: compiled step, 1: PyNative {YAMLS}"
    )
    p.add_argument(
        "--predict_data", nargs="+", help="prompt(s), or a file of prompts (default: none)"
    )
    p.add_argument("--predict_batch_size", type=int, help="prompts decoded together (default: 1)")
    p.add_argument(
        "--do_sample", type=mf_bool, help=f"predict: True samples, False is greedy {YAMLS}"
    )
    p.add_argument(
        "--device_id", type=int, help="device to run on; no meaning on CPU (default: MindSpore's)"
    )
    p.add_argument(
        "--device_target",
        help="Ascend, GPU or CPU: what this MindSpore runs on (default: this MindSpore's)",
    )
    for flag in NO_EFFECT_FLAGS:
        p.add_argument(f"--{flag}", type=mf_bool, help=argparse.SUPPRESS)
    for flag in UNSUPPORTED_FLAGS:
        p.add_argument(f"--{flag}", dest=f"unsupported_{flag}", nargs="*", help=argparse.SUPPRESS)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run_mindformer.py: train, finetune, eval or predict from a MindFormers YAML",
        description="MindFormers' run_mindformer.py with its flags; a flag left out keeps "
        "the YAML's value.",
    )
    _add_run_flags(p)
    add_memory_flags(p)
    add_msrun_flags(p)
    p.set_defaults(func=run_command)

"""Rule pretrain: `mindsft run --run_mode train` (msrun with the model's pretrain
workers) from the converted weights; the run folder appears whole or not at all."""

import os
import shutil
from pathlib import Path

from mindsft.cli import main
from mindsft.errors import MindsftError
from mindsft.workflow.logs import log_to

smk = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(smk.log[0]):
    out = Path(smk.output[0])
    work = out.with_name(f".{out.name}.work")
    shutil.rmtree(work, ignore_errors=True)  # a killed attempt starts over
    argv = ["run", "--config", smk.input.config, "--run_mode", "train"]
    argv += ["--train_dataset_dir", smk.input.data, "--load_checkpoint", smk.input.weights]
    argv += ["--output_dir", str(work)]
    workers = smk.params.workers
    argv += ["--use_parallel", str(workers > 1)]
    argv += ["--worker_num", str(workers)] if workers > 1 else []
    print("+ mindsft", " ".join(argv), flush=True)
    if rc := main(argv):
        raise MindsftError(f"pretrain: mindsft run exited with {rc} (see {smk.log[0]})")
    os.replace(work, out)

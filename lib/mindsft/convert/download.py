"""`mindsft download`: an HF model folder from the Hub (or its local cache) with
`huggingface_hub.snapshot_download`, safetensors preferred over `.bin`.

The token comes from the environment (`HF_TOKEN`, read by huggingface_hub) and
is never printed; `HF_HUB_OFFLINE=1` makes huggingface_hub use its cache only.
Hub failures end in one line saying what to do.
"""

import fnmatch
import os
import shutil
from pathlib import Path

from mindsft.atomic import atomic_output, check_writable
from mindsft.convert import hf_folder
from mindsft.errors import MindsftError

META = [
    "config.json",
    "generation_config.json",
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]
SAFETENSORS = ["model*.safetensors", hf_folder.SAFETENSORS_INDEX]
BIN = ["pytorch_model*.bin", hf_folder.BIN_INDEX]


def _snapshot(repo_id: str, revision, patterns) -> Path:
    """snapshot_download with the Hub's failures turned into one clear line."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{revision or 'main'}"
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except GatedRepoError:
        raise MindsftError(
            f"{where}: gated repository; accept its licence on huggingface.co and set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise MindsftError(
            f"{where}: repository not found (or private: set HF_TOKEN to a token with access)"
        ) from None
    except RevisionNotFoundError:
        raise MindsftError(f"{where}: no such revision") from None
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub cannot be reached"
        raise MindsftError(
            f"{where}: {why} and the local HF cache holds no complete copy"
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise MindsftError(f"{where}: the Hub answered HTTP {status}") from None


def _matching(folder: Path, patterns) -> list:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in patterns)
    )


def download(repo_id: str, output_dir, revision=None) -> Path:
    """Fetch config, tokenizer and weights of `repo_id` into `output_dir`:
    safetensors when the repository has them, else PyTorch `.bin`. Files are
    hard-linked from the HF cache where possible (copied otherwise)."""
    check_writable(output_dir, "dir")  # before downloading, not after
    folder = _snapshot(repo_id, revision, META + SAFETENSORS)
    weights = _matching(folder, SAFETENSORS)
    if not weights:
        folder = _snapshot(repo_id, revision, META + BIN)
        weights = _matching(folder, BIN)
    if not weights:
        raise MindsftError(f"{repo_id}: no model*.safetensors or pytorch_model*.bin weights")
    files = _matching(folder, META) + weights
    with atomic_output(output_dir) as tmp:
        tmp.mkdir()
        for src in files:
            blob = src.resolve()
            try:
                os.link(blob, tmp / src.name)
            except OSError:
                shutil.copyfile(blob, tmp / src.name)
    return Path(output_dir)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "download",
        help="download an HF model (config, tokenizer, weights) with huggingface_hub",
        description="Fetch an HF model folder - config, tokenizer and weights (safetensors "
        "when the repository has them, else pytorch_model*.bin) - from the Hub or its local "
        "cache with huggingface_hub. The token comes from HF_TOKEN and is never printed; "
        "HF_HUB_OFFLINE=1 uses the cache only.",
    )
    p.add_argument(
        "--repo_id", required=True, help="the Hub repository, e.g. meta-llama/Llama-2-7b-hf"
    )
    p.add_argument(
        "--revision", default=None, help="branch, tag or commit (default: the main branch)"
    )
    p.add_argument("--output_dir", required=True, help="the model folder to write")
    p.set_defaults(func=lambda a: print(f"wrote {download(a.repo_id, a.output_dir, a.revision)}"))

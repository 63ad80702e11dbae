"""Getting an alpaca-format JSON and holding part of it out for evaluation."""

import json
import random
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError
from mindsft.files import file_sha256, read_json


def fetch_url(url: str, out, sha256: "str | None" = None, timeout: float = 60.0) -> None:
    """Download `url` to `out` (atomically); check its sha256 when one is given."""
    with atomic_output(out) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as fh:
                shutil.copyfileobj(resp, fh)
        except (urllib.error.URLError, OSError) as exc:
            raise MindsftError(f"{url}: cannot download ({exc})") from exc
        if sha256 and (got := file_sha256(tmp)) != sha256:
            raise MindsftError(f"{url}: sha256 is {got}, config says {sha256}")


def split_alpaca(src, train_out, eval_out, eval_records: int, seed: int = 0) -> dict:
    """Hold out `eval_records` records of an alpaca JSON list, chosen by a seeded
    shuffle; both parts keep the source order. Returns the counts."""
    records = read_json(src, expect=list)
    if eval_records >= len(records):
        raise MindsftError(
            f"{src}: eval_records={eval_records} leaves nothing to train on ({len(records)} "
            "records)"
        )
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held = set(order[:eval_records])
    parts = {
        train_out: [r for i, r in enumerate(records) if i not in held],
        eval_out: [r for i, r in enumerate(records) if i in held],
    }
    for out, part in parts.items():
        with atomic_output(out) as tmp:
            Path(tmp).write_text(json.dumps(part, ensure_ascii=False, indent=2), encoding="utf-8")
    return {"train": len(parts[train_out]), "eval": eval_records}

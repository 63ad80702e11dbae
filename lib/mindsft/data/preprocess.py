"""Conversation JSON (qa) or plain text (wiki) -> MindRecord, row for row what
MindFormers' `llama_preprocess.py` writes (rows.py builds the rows), with a stats
file beside it: `<output_file>.stats.json`.

Each piece of text is tokenized once, by SentencePiece's batch encoder, in
`--workers` processes; rows are streamed to MindSpore's FileWriter in input order,
with a bounded number of tasks in flight. Outputs appear only when complete."""

import collections
import dataclasses
import glob
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from mindsft.atomic import atomic_output
from mindsft.data.alpaca import load_json_list
from mindsft.data.rows import Stats, qa_chunk, wiki_chunk
from mindsft.data.tokenizer import SentencePieceTokenizer
from mindsft.data.wikitext import clean_wikitext, wiki_paragraphs
from mindsft.errors import MindsftError

MIN_SEQ_LENGTH = 16
CHUNK_RECORDS = 512  # conversations per worker task
CHUNK_PARAGRAPHS = 2048  # wiki paragraphs per worker task
SCHEMAS = {
    "qa": {
        "input_ids": {"type": "int32", "shape": [-1]},
        "labels": {"type": "int32", "shape": [-1]},
    },
    "wiki": {"input_ids": {"type": "int32", "shape": [-1]}},
}


# ---- workers: tasks in input order, a bounded number in flight

_worker_tokenizer = None


def _init_worker(model_file) -> None:
    global _worker_tokenizer
    _worker_tokenizer = SentencePieceTokenizer(model_file)


def _run_task(task):
    kind, args = task
    if kind == "qa":
        return qa_chunk(_worker_tokenizer, *args)
    return wiki_chunk(_worker_tokenizer, *args)


def ordered_results(tasks, model_file, workers: int):
    """Run tasks (in this process when workers <= 1) and yield results in task
    order, with at most 2 * workers tasks queued or done-but-unwritten."""
    if workers <= 1:
        _init_worker(model_file)
        yield from map(_run_task, tasks)
        return
    # spawn: the parent may hold MindSpore's threads, which fork does not copy safely
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(model_file,),
    )
    try:
        pending = collections.deque()
        for task in tasks:
            pending.append(pool.submit(_run_task, task))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool as exc:
        raise MindsftError(f"a preprocess worker process died ({exc})") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---- inputs


def input_files(pattern: str) -> list:
    files = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not files:
        raise MindsftError(f"{pattern}: no input file matches")
    for f in files:
        if not os.path.isfile(f):
            raise MindsftError(f"{f}: input file not found")
    return files


def qa_tasks(files: list, length: int):
    for path in files:
        records = load_json_list(path)
        for start in range(0, len(records), CHUNK_RECORDS):
            yield "qa", (records[start : start + CHUNK_RECORDS], start, path, length)


def wiki_tasks(files: list):
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise MindsftError(f"{path}: not UTF-8 text ({exc})") from None
        paragraphs = wiki_paragraphs(clean_wikitext(text))
        for start in range(0, len(paragraphs), CHUNK_PARAGRAPHS):
            yield "wiki", (paragraphs[start : start + CHUNK_PARAGRAPHS],)


# ---- the stage


class _MindRecordRows:
    """A MindSpore FileWriter for one shard. MindRecord stores its own file name in
    the header, so it writes under the final name inside a scratch folder; `finish`
    moves both files (X, X.db) to `dest` and `dest.db`."""

    def __init__(self, dest: Path, final_name: str, dataset_type: str):
        from mindspore.mindrecord import FileWriter  # heavy import, only where it is needed

        self.scratch = dest.with_name(dest.name + ".d")
        self.scratch.mkdir()
        self.path = self.scratch / final_name
        self.writer = FileWriter(str(self.path), shard_num=1, overwrite=True)
        self.writer.add_schema(SCHEMAS[dataset_type], dataset_type)
        self.dest = dest

    def write(self, columns: dict) -> None:
        names = list(columns)
        rows = [dict(zip(names, values)) for values in zip(*columns.values())]
        if rows:
            self.writer.write_raw_data(rows)

    def finish(self) -> None:
        self.writer.commit()
        os.replace(self.path, self.dest)
        os.replace(f"{self.path}.db", f"{self.dest}.db")

    def cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def preprocess(
    dataset_type: str, input_glob: str, model_file, seq_length: int, output_file, workers: int = 1
) -> Stats:
    """Write `output_file` (+ `.db`) and `output_file.stats.json`; return the Stats."""
    if dataset_type not in SCHEMAS:
        raise MindsftError(f"dataset_type {dataset_type!r}: expected one of {sorted(SCHEMAS)}")
    if seq_length < MIN_SEQ_LENGTH:
        raise MindsftError(f"seq_length {seq_length}: must be at least {MIN_SEQ_LENGTH}")
    if workers < 1:
        raise MindsftError(f"workers {workers}: must be at least 1")
    files = input_files(input_glob)
    tok = SentencePieceTokenizer(model_file)
    length = seq_length + 1
    output_file = Path(output_file)
    stats_file = output_file.with_name(output_file.name + ".stats.json")
    stats = Stats()
    with (
        atomic_output(output_file, suffixes=(".db",)) as tmp,
        atomic_output(stats_file) as tmp_stats,
    ):
        out = _MindRecordRows(tmp, output_file.name, dataset_type)
        try:
            if dataset_type == "qa":
                for input_ids, labels, chunk_stats in ordered_results(
                    qa_tasks(files, length), tok.model_file, workers
                ):
                    out.write({"input_ids": input_ids, "labels": labels})
                    stats.add(chunk_stats)
            else:
                _write_wiki(
                    out, ordered_results(wiki_tasks(files), tok.model_file, workers), length, stats
                )
            if stats.rows == 0:
                raise MindsftError(
                    f"{input_glob}: empty dataset (no rows of seq_length + 1 = {length} tokens)"
                )
            out.finish()
        finally:
            out.cleanup()
        summary = {
            "dataset_type": dataset_type,
            "seq_length": seq_length,
            **dataclasses.asdict(stats),
            "tokenizer_sha256": tok.sha256(),
            "inputs": files,
        }
        tmp_stats.write_text(json.dumps(summary, indent=2) + "\n")
    return stats


def _write_wiki(out: _MindRecordRows, streams, length: int, stats: Stats) -> None:
    """Cut the concatenated token stream into rows of `length`, carrying the
    remainder from one chunk to the next; the final remainder is dropped."""
    carry = np.empty(0, dtype=np.int32)
    for ids in streams:
        carry = np.concatenate([carry, ids])
        n_rows = len(carry) // length
        if n_rows:
            out.write({"input_ids": carry[: n_rows * length].reshape(n_rows, length)})
            carry = carry[n_rows * length :]
            stats.rows += n_rows
    stats.tokens = stats.rows * length
    stats.trained_tokens = stats.rows * (length - 1)
    stats.tokens_dropped = len(carry)

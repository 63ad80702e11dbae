"""Conversation JSON (qa) or plain text (wiki) -> MindRecord, row for row what
MindFormers' `llama_preprocess.py` writes (rows.py builds the rows), with a stats
file beside it: `<output_file>.stats.json`.

Each piece of text is tokenized once, by SentencePiece's batch encoder, in
`--workers` processes; rows are streamed to MindSpore's FileWriter in input order,
with a bounded number of tasks in flight. Outputs appear only when complete.

Speed: conversation files are parsed record by record as chunks are needed
(`inputs.iter_json_list`); the workers send each chunk back as one buffer of MindRecord
blobs (`pack_rows`), which `MindRecordWriter` hands to MindSpore's shard writer
directly (see mindrecord_writer.py); the writing process tokenizes a chunk itself
whenever the next result is not ready (`OrderedResults`)."""

import collections
import dataclasses
import itertools
import json
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from mindsft.atomic import atomic_output, check_writable
from mindsft.data.inputs import InputProgress, input_files, iter_records
from mindsft.data.mindrecord_writer import MindRecordWriter, pack_rows, unpack_rows
from mindsft.data.packing import SCHEMA as PACKED_SCHEMA
from mindsft.data.packing import Packer
from mindsft.data.rows import Stats, qa_chunk, wiki_chunk
from mindsft.data.template import TEMPLATE_NAME, check_template
from mindsft.data.tokenizer import SentencePieceTokenizer
from mindsft.data.wikitext import clean_wikitext, wiki_paragraphs
from mindsft.errors import MindsftError
from mindsft.files import read_json, read_text
from mindsft.progress import progress_bar

MIN_SEQ_LENGTH = 16
# the longest rows preprocess writes without a model to say otherwise: Llama 3.1's
# 131,072 positions, the longest context of the family
MAX_SEQ_LENGTH = 131072
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
        input_ids, labels, stats = qa_chunk(_worker_tokenizer, *args)
        return pack_rows({"input_ids": input_ids, "labels": labels}), stats
    return wiki_chunk(_worker_tokenizer, *args)


class OrderedResults:
    """Runs tasks (in this process when workers <= 1) and yields their results in
    task order, with at most 3 * workers tasks queued or done-but-unwritten. With
    workers, the first tasks are submitted on construction, so the caller can do
    its own setup (importing MindSpore) while they run; and while the next result
    is not ready, this process runs the next task itself instead of waiting. Use
    as a context manager."""

    def __init__(self, tasks, model_file, workers: int):
        self.tasks, self.workers, self.pool = iter(tasks), workers, None
        self.model_file = model_file
        self.pending = collections.deque()
        if workers <= 1:
            _init_worker(model_file)
            return
        first = next(self.tasks, None)  # bad input fails here, before any process starts
        if first is None:
            return
        self.tasks = itertools.chain([first], self.tasks)
        # spawn: the parent may hold MindSpore's threads, which fork does not copy safely
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(model_file,),
        )
        try:
            self._fill()
        except BaseException:
            self.pool.shutdown(wait=True, cancel_futures=True)
            raise

    def _fill(self) -> None:
        while len(self.pending) < 2 * self.workers:
            task = next(self.tasks, None)
            if task is None:
                return
            self.pending.append(self.pool.submit(_run_task, task))

    def __iter__(self):
        if self.pool is None:
            yield from map(_run_task, self.tasks)
            return
        try:
            while self.pending:
                idle = not self.pending[0].done() and len(self.pending) < 3 * self.workers
                if idle and self._run_next_here():
                    continue
                result = self.pending.popleft().result()
                self._fill()
                yield result
        except BrokenProcessPool as exc:
            raise MindsftError(f"a preprocess worker process died ({exc})") from None

    def _run_next_here(self) -> bool:
        """Run the next task in this process, its result queued in order."""
        task = next(self.tasks, None)
        if task is None:
            return False
        if _worker_tokenizer is None:
            _init_worker(self.model_file)
        done = Future()
        done.set_result(_run_task(task))
        self.pending.append(done)
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


# ---- inputs


def qa_tasks(files: list, length: int, template: str, train_on_prompt: bool, progress):
    for k, path in enumerate(files):
        records = iter_records(path, progress.opened)
        for start in itertools.count(0, CHUNK_RECORDS):
            chunk = list(itertools.islice(records, CHUNK_RECORDS))
            if not chunk:
                break
            values, lines = (list(column) for column in zip(*chunk, strict=True))
            lines = None if lines[0] is None else lines
            progress.mark(k)
            yield "qa", (values, start, path, length, template, train_on_prompt, lines)


def wiki_tasks(files: list, progress):
    for k, path in enumerate(files):
        paragraphs = wiki_paragraphs(clean_wikitext(read_text(path, "input file")))
        for start in range(0, len(paragraphs), CHUNK_PARAGRAPHS):
            end = min(start + CHUNK_PARAGRAPHS, len(paragraphs))
            progress.mark(k, end / len(paragraphs))
            yield "wiki", (paragraphs[start:end],)


# ---- the stage


def model_positions(model_file, config=None) -> tuple:
    """(positions, where from) of the model the rows are for: max_position_embeddings
    of `config` (HF config.json or its folder; a MindFormers YAML's seq_length), else
    of a config.json beside the tokenizer; (None, None) when neither says."""
    if config is not None:
        from mindsft.models.config import load_config

        return load_config(config).seq_length, str(config)
    beside = Path(model_file).parent / "config.json"
    positions = read_json(beside).get("max_position_embeddings") if beside.is_file() else None
    if isinstance(positions, int) and not isinstance(positions, bool):
        return positions, str(beside)
    return None, None


def check_seq_length(seq_length: int, model_file, config=None) -> None:
    """seq_length at least MIN_SEQ_LENGTH and at most the model's positions and
    MAX_SEQ_LENGTH, else one line saying why (before anything is allocated)."""
    if seq_length < MIN_SEQ_LENGTH:
        raise MindsftError(f"seq_length {seq_length}: must be at least {MIN_SEQ_LENGTH}")
    positions, source = model_positions(model_file, config)
    if positions is not None and seq_length > positions:
        raise MindsftError(
            f"seq_length {seq_length}: the model takes at most {positions} positions ({source})"
        )
    if seq_length > MAX_SEQ_LENGTH:
        raise MindsftError(
            f"seq_length {seq_length}: above mindsft's ceiling of {MAX_SEQ_LENGTH} tokens a row"
        )


def _check_options(dataset_type, workers, template, train_on_prompt, packing) -> None:
    if dataset_type not in SCHEMAS:
        raise MindsftError(f"dataset_type {dataset_type!r}: expected one of {sorted(SCHEMAS)}")
    if workers < 1:
        raise MindsftError(f"workers {workers}: must be at least 1")
    if dataset_type == "wiki" and (template != TEMPLATE_NAME or train_on_prompt):
        raise MindsftError(
            "template and train_on_prompt apply to qa data; wiki rows train on every token"
        )
    if packing and dataset_type == "wiki":
        raise MindsftError(
            "--packing True with --dataset_type wiki: wiki rows are already contiguous text "
            "cut into full rows, there is no padding to pack away"
        )
    check_template(template)


def preprocess(
    dataset_type: str,
    input_glob: str,
    model_file,
    seq_length: int,
    output_file,
    workers: int = 1,
    template: str = TEMPLATE_NAME,
    train_on_prompt: bool = False,
    config=None,
    packing: bool = False,
) -> Stats:
    """Write `output_file` (+ `.db`) and `output_file.stats.json`; return the Stats.
    qa records are laid out in FastChat `template`; `train_on_prompt` trains on the
    whole text, not only the answers (see chat_rows.py); `config` (optional) bounds
    seq_length by the model's positions; `packing` packs whole samples into rows
    (then `rows` counts the packed rows, the other counts samples)."""
    _check_options(dataset_type, workers, template, train_on_prompt, packing)
    check_seq_length(seq_length, model_file, config)
    output_file = Path(output_file)
    stats_file = output_file.with_name(output_file.name + ".stats.json")
    for path in (output_file, Path(f"{output_file}.db"), stats_file):
        check_writable(path, "file")
    files = input_files(input_glob)
    tok = SentencePieceTokenizer(model_file)
    length = seq_length + 1
    stats = Stats()
    packer = Packer(length, tok.pad_id) if packing else None
    schema = PACKED_SCHEMA if packing else SCHEMAS[dataset_type]
    with (
        atomic_output(output_file, suffixes=(".db",)) as tmp,
        atomic_output(stats_file) as tmp_stats,
    ):
        progress = InputProgress(files)
        if dataset_type == "qa":
            tasks = qa_tasks(files, length, template, train_on_prompt, progress)
        else:
            tasks = wiki_tasks(files, progress)
        with (
            OrderedResults(tasks, tok.model_file, workers) as ordered,
            progress_bar(progress.total, desc="preprocess", unit="B", unit_scale=True) as bar,
        ):
            results = progress.follow(ordered, bar, stats)
            # MindSpore is imported here, while the workers run the first tasks
            with MindRecordWriter(tmp, output_file.name, schema, dataset_type) as out:
                _write(out, results, dataset_type, length, stats, packer)
                if stats.rows == 0:
                    raise MindsftError(
                        f"{input_glob}: empty dataset (no rows of seq_length + 1 = {length} tokens)"
                    )
                out.finish()
        how = {"dataset_type": dataset_type, "seq_length": seq_length}
        if dataset_type == "qa":
            how.update(template=template, train_on_prompt=train_on_prompt)
        summary = {**how, **dataclasses.asdict(stats), "tokenizer_sha256": tok.sha256()}
        if packer is not None:
            summary.update(packer.summary())
        tmp_stats.write_text(json.dumps({**summary, "inputs": files}, indent=2) + "\n")
    return stats


def _write(out: MindRecordWriter, results, dataset_type: str, length: int, stats, packer) -> None:
    """Write the tasks' results as rows: qa as they come, or through `packer`; wiki
    cut into rows of `length`."""
    if packer is not None:
        _write_packed_qa(out, results, packer, stats)
    elif dataset_type == "qa":
        for packed, chunk_stats in results:
            out.write_packed(packed, chunk_stats.rows)
            stats.add(chunk_stats)
    else:
        _write_wiki(out, results, length, stats)


def _write_packed_qa(out: MindRecordWriter, results, packer: Packer, stats: Stats) -> None:
    """Pack the qa rows as they come; `stats` counts samples, then `rows` the packed rows."""
    widths = {"input_ids": packer.length, "labels": packer.length}
    for packed, chunk_stats in results:
        out.write_rows(packer.add(**unpack_rows(packed, widths)))
        stats.add(chunk_stats)
    out.write_rows(packer.finish())
    stats.rows = packer.rows


def _write_wiki(out: MindRecordWriter, streams, length: int, stats: Stats) -> None:
    """Cut the concatenated token stream into rows of `length`, carrying the
    remainder from one chunk to the next; the final remainder is dropped."""
    carry = np.empty(0, dtype=np.int32)
    for ids in streams:
        carry = np.concatenate([carry, ids])
        n_rows = len(carry) // length
        if n_rows:
            rows = carry[: n_rows * length].reshape(n_rows, length)
            out.write_packed(pack_rows({"input_ids": rows}), n_rows)
            carry = carry[n_rows * length :]
            stats.rows += n_rows
    stats.tokens = stats.rows * length
    stats.trained_tokens = stats.rows * (length - 1)
    stats.tokens_dropped = len(carry)

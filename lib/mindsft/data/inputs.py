"""The input files of `preprocess`: the glob, JSON lists read record by record
from a small buffer (or JSON Lines), and how far the tasks have read into the
files (bytes, for the progress bar)."""

import collections
import glob
import json
import os

from mindsft.data.alpaca import load_json_list
from mindsft.data.formats import is_json_lines, iter_json_lines
from mindsft.data.rows import Stats
from mindsft.errors import MindsftError


def input_files(pattern: str) -> list:
    files = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not files:
        raise MindsftError(f"{pattern}: no input file matches")
    for f in files:
        if not os.path.isfile(f):
            raise MindsftError(f"{f}: input file not found")
    return files


class InputProgress:
    """How far the tasks have read into the input files, in bytes (the position
    after each task, in task order), and the progress bar that follows it."""

    def __init__(self, files: list):
        self.sizes = [os.path.getsize(f) for f in files]
        self.total = sum(self.sizes)
        self.file = None  # the open input file
        self.after = collections.deque()

    def opened(self, f) -> None:
        self.file = f

    def mark(self, k: int, fraction=None) -> None:
        """A task was cut from files[k]: up to where its reader is (all of it once
        closed), or up to `fraction` of it."""
        size = self.sizes[k]
        if fraction is not None:
            done = int(fraction * size)
        else:
            try:
                done = min(self.file.buffer.tell(), size)
            except (AttributeError, ValueError):
                done = size
        self.after.append(sum(self.sizes[:k]) + done)

    def follow(self, results, bar, stats: Stats):
        """`results`, moving `bar` on (and its row count) as each is written."""
        for result in results:
            yield result
            bar.update(self.after.popleft() - bar.n)
            bar.set_postfix(rows=stats.rows, refresh=False)


def iter_records(path, opened=None):
    """(record, line number) of a JSON Lines file; (record, None) of a JSON list.
    `opened` is called with the file once it is open."""
    if is_json_lines(path):
        yield from iter_json_lines(path, opened)
    else:
        for record in iter_json_list(path, opened):
            yield record, None


def iter_json_list(path, opened=None):
    """The records of a file holding a JSON list, parsed one by one as they are
    needed, from a buffer of a block or two (the workers start on the first chunk,
    and memory holds only the records in flight); a file that is not a non-empty
    JSON list fails with load_json_list's one-line error. `opened` is called with
    the file once it is open."""
    try:
        with open(path, encoding="utf-8") as f:
            if opened is not None:
                opened(f)
            stream = _JsonStream(f)
            if stream.next_char() != "[":
                _json_list_error(path)
            stream.pos += 1
            while True:
                yield stream.value()
                sep = stream.next_char()
                stream.pos += 1
                if sep == "]" and stream.next_char() == "":
                    return
                if sep != ",":
                    _json_list_error(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        _json_list_error(path)


class _JsonStream:
    """A text file read in blocks, with the position of the next unread character."""

    BLOCK = 1 << 20  # characters

    def __init__(self, f):
        self.f, self.buf, self.pos, self.eof = f, "", 0, False
        self.decode = json.JSONDecoder().raw_decode

    def _fill(self) -> bool:
        """Append the next block to what is unread; False at the end of the file."""
        block = "" if self.eof else self.f.read(self.BLOCK)
        self.buf, self.pos, self.eof = self.buf[self.pos :] + block, 0, not block
        return bool(block)

    def next_char(self) -> str:
        """Skip whitespace; the next character, "" at the end of the file."""
        while True:
            self.pos = json.decoder.WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self._fill():
                return self.buf[self.pos : self.pos + 1]

    def value(self):
        """The next element of the list. Unless the buffer shows "," or "]" after
        it (a number cut by the end of a block may parse short), it is parsed
        again with the next block, until the file ends."""
        self.next_char()
        while True:
            try:
                value, end = self.decode(self.buf, self.pos)
                after = json.decoder.WHITESPACE.match(self.buf, end).end()
                if self.buf[after : after + 1] in (",", "]") or self.eof:
                    self.pos = end
                    return value
            except json.JSONDecodeError:
                if self.eof:
                    raise
            self._fill()


def _json_list_error(path):
    load_json_list(path)  # raises the error that names what is wrong
    raise MindsftError(f"{path}: not valid JSON")

"""SentencePiece tokenization that yields the ids MindFormers' `LlamaTokenizer`
(legacy mode) yields, without its per-call Python overhead.

MindFormers' tokenizer first splits a text on its special-token strings (`<s>`,
`</s>`, `<unk>`), maps each of those to its id, and encodes every other segment with
SentencePiece on its own (so each segment gets SentencePiece's dummy-prefix space).
Here all segments of a batch go to SentencePiece's batch encoder in one call; for a
model where no merge can cross a space that follows a non-space (Llama's), segments
are cut into words at such spaces and each distinct word is encoded once."""

import re
from itertools import pairwise, repeat
from pathlib import Path

import numpy as np
import sentencepiece as spm

from mindsft.errors import MindsftError
from mindsft.files import file_sha256

# a space after a character that is not a space, with text after it: where a text is
# cut into words that SentencePiece encodes alone (the space becomes the dummy prefix)
_WORD_BREAK = re.compile(r"(?<=[^ \u2581]) (?=.)", re.DOTALL)
CACHE_LIMIT = 200_000  # distinct words remembered per process (tens of MB)


def _words(text: str) -> list:
    """`text` cut at _WORD_BREAK; plain `str.split` where every space is one."""
    if "  " in text or "\u2581" in text or text[:1] == " " or text[-1:] == " ":
        return _WORD_BREAK.split(text)
    return text.split(" ")


class SentencePieceTokenizer:
    """A Llama SentencePiece model with MindFormers' special-token handling."""

    def __init__(self, model_file):
        self.model_file = Path(model_file)
        if not self.model_file.is_file():
            raise MindsftError(f"{self.model_file}: tokenizer file not found")
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(self.model_file))
        except (RuntimeError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise MindsftError(f"{self.model_file}: not a SentencePiece model ({reason})") from None
        self.bos_id, self.eos_id, self.unk_id = self.sp.bos_id(), self.sp.eos_id(), self.sp.unk_id()
        if min(self.bos_id, self.eos_id) < 0:
            raise MindsftError(f"{self.model_file}: SentencePiece model has no BOS or EOS piece")
        # MindFormers pads with its pad token "<unk>", i.e. the unk id (0 for Llama)
        self.pad_id = self.unk_id
        specials = {self.sp.id_to_piece(i): i for i in (self.bos_id, self.eos_id, self.unk_id)}
        self._special_ids = specials
        # longest first, so that at one position the longest special string wins
        alternatives = sorted(specials, key=len, reverse=True)
        self._special_re = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")
        self._specials_at_start = tuple(alternatives)
        self.splits_at_spaces = self._splits_at_spaces()
        self._prefixes = {}
        self._words = _WordTable()

    def __getstate__(self):
        # a worker process rebuilds the processor from the file
        return {"model_file": self.model_file}

    def __setstate__(self, state):
        self.__init__(state["model_file"])

    def _splits_at_spaces(self) -> bool:
        """True when T(A + " " + B) == T(A) + T(B) for any A ending in a non-space and
        any B (T with the dummy prefix): a BPE model that normalizes by identity, keeps
        spaces as they are, adds the dummy prefix, and has no piece in which "▁"
        follows another character - so no merge crosses such a space."""
        try:
            from sentencepiece import sentencepiece_model_pb2 as pb
        except ImportError:  # protobuf missing: tokenize every piece whole
            return False
        model = pb.ModelProto.FromString(self.sp.serialized_model_proto())
        norm, trainer = model.normalizer_spec, model.trainer_spec
        pieces = self.sp.id_to_piece(list(range(self.sp.get_piece_size())))
        return (
            trainer.model_type == pb.TrainerSpec.ModelType.BPE
            and norm.name == "identity"
            and norm.add_dummy_prefix
            and norm.escape_whitespaces
            and not norm.remove_extra_whitespaces
            and not trainer.treat_whitespace_as_suffix
            and not any("▁" in p.lstrip("▁") for p in pieces)
        )

    def starts_with_special(self, text: str) -> bool:
        return text.startswith(self._specials_at_start)

    def cached_ids(self, text: str) -> list:
        """Ids of a text that recurs in every record (a prompt prefix), computed once."""
        if text not in self._prefixes:
            self._prefixes[text] = self.encode_batch([text])[0]
        return self._prefixes[text]

    def sha256(self) -> str:
        return file_sha256(self.model_file)

    def encode_batch(self, texts: list) -> list:
        """Ids of each text (no BOS/EOS), as lists; see `encode_flat`."""
        flat, offsets = self.encode_flat(texts)
        return [flat[a:b].tolist() for a, b in pairwise(offsets)]

    def encode_flat(self, texts: list) -> tuple:
        """Ids of all texts (no BOS/EOS) as one int32 array, and the offsets where
        each text's ids start (one more than texts), as MindFormers' tokenizer gives
        them: special-token strings become their ids, the text between them is
        encoded by SentencePiece - in words cut at single spaces (see
        `_splits_at_spaces`), each distinct word encoded once, where the model
        allows it."""
        keys, counts = [], []
        for text in texts:
            before = len(keys)
            for segment in self._pieces(text):
                if type(segment) is tuple:  # a special token's id
                    keys.append(segment)
                else:
                    keys += segment
            counts.append(len(keys) - before)
        table = self._words if self.splits_at_spaces else _WordTable()
        flat, key_ends = table.ids(keys, self.sp)
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        offsets = np.concatenate([[0], key_ends])[offsets]
        return flat, offsets

    def encode_spans(self, text: str) -> tuple:
        """Ids of `text` as `encode_flat` gives them (int32), and the UTF-8 byte range
        [begin, end) of `text` each covers (two int64 arrays); a piece that covers
        nothing (a lone dummy-prefix "▁", a byte-fallback piece before the last)
        gets the byte after it. Slower than encode_flat: one text, no word cache."""
        from sentencepiece import sentencepiece_pb2 as pb

        ids, spans, base = [], [], 0
        for k, segment in enumerate(self._special_re.split(text)):
            size = len(segment.encode("utf-8"))
            if k % 2:
                ids.append(self._special_ids[segment])
                spans.append((base, base + size))
            elif segment:
                proto = self.sp.encode(segment, out_type="serialized_proto")
                for p in pb.SentencePieceText.FromString(proto).pieces:
                    begin = base + min(p.begin, size - 1)
                    ids.append(p.id)
                    spans.append((begin, max(base + p.end, begin + 1)))
            base += size
        spans = np.array(spans, dtype=np.int64).reshape(-1, 2)
        return np.array(ids, dtype=np.int32), spans[:, 0], spans[:, 1]

    def _pieces(self, text: str) -> list:
        """The text as lists of strings to encode, between (special-token id,)."""
        split = _words if self.splits_at_spaces else lambda segment: [segment]
        if self._special_re.search(text) is None:
            return [split(text)]
        out = []
        # the captured special-token strings sit at odd positions
        for k, segment in enumerate(self._special_re.split(text)):
            if k % 2:
                out.append((self._special_ids[segment],))
            elif segment:
                out.append(split(segment))
        return out


class _WordTable:
    """Distinct words (and special-token keys `(id,)`) with their ids, held as one
    flat int32 array, so that a batch's ids are gathered by numpy."""

    def __init__(self):
        self.index = {}
        self.flat = np.empty(0, dtype=np.int32)
        self.starts = np.empty(0, dtype=np.int64)
        self.lengths = np.empty(0, dtype=np.int64)

    def _add(self, new: set, sp) -> None:
        """Encode new keys (one SentencePiece batch call) and append their ids."""
        new = list(new)
        words = [k for k in new if type(k) is str]
        # one thread each: the --workers processes are the parallelism
        encoded = dict(zip(words, sp.encode(words, num_threads=1), strict=True))
        pieces = [list(k) if type(k) is tuple else encoded[k] for k in new]
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        starts = len(self.flat) + np.cumsum(lengths) - lengths
        self.index.update(zip(new, range(len(self.index), len(self.index) + len(new)), strict=True))
        joined = np.fromiter(
            (i for p in pieces for i in p), dtype=np.int32, count=int(lengths.sum())
        )
        self.flat = np.concatenate([self.flat, joined])
        self.starts = np.concatenate([self.starts, starts])
        self.lengths = np.concatenate([self.lengths, lengths])

    def ids(self, keys: list, sp) -> tuple:
        """The keys' ids one after another (new keys encoded by `sp` first), and
        where each key's ids end."""
        idx = np.array(list(map(self.index.get, keys, repeat(-1))), dtype=np.int64)
        missing = np.flatnonzero(idx < 0).tolist()
        if missing:
            new = {keys[i] for i in missing}
            if len(self.index) + len(new) > CACHE_LIMIT:
                self.__init__()
                new, missing = set(keys), range(len(keys))
            self._add(new, sp)
            idx[missing] = [self.index[keys[i]] for i in missing]
        lengths = self.lengths[idx]
        ends = np.cumsum(lengths)
        # position t of the output reads flat[start of its key + (t - begin of its key)]
        shift = np.repeat(self.starts[idx] - (ends - lengths), lengths)
        return self.flat[shift + np.arange(len(shift))], ends

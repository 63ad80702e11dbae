"""SentencePiece tokenization that yields the ids MindFormers' `LlamaTokenizer`
(legacy mode) yields, without its per-call Python overhead.

MindFormers' tokenizer first splits a text on its special-token strings (`<s>`,
`</s>`, `<unk>`), maps each of those to its id, and encodes every other segment with
SentencePiece on its own (so each segment gets SentencePiece's dummy-prefix space).
Here all segments of a batch go to SentencePiece's batch encoder in one call; for a
model where no merge can cross a space that follows a non-space (Llama's), segments
are cut into words at such spaces and each distinct word is encoded once."""

import hashlib
import re
from itertools import chain
from pathlib import Path

import sentencepiece as spm

from mindsft.errors import MindsftError

# a space after a character that is not a space, with text after it: where a text is
# cut into words that SentencePiece encodes alone (the space becomes the dummy prefix)
_WORD_BREAK = re.compile(r"(?<=[^ \u2581]) (?=.)", re.DOTALL)
CACHE_LIMIT = 200_000  # distinct words remembered per process (tens of MB)


def _words(text: str) -> list:
    """`text` cut at _WORD_BREAK; plain `str.split` where every space is one."""
    if "  " in text or "\u2581" in text or text[:1] == " " or text[-1:] == " ":
        return _WORD_BREAK.split(text)
    return text.split(" ")


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        self._cache = {}

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
        if text not in self._cache:
            self._cache[text] = self.encode_batch([text])[0]
        return self._cache[text]

    def sha256(self) -> str:
        return file_sha256(self.model_file)

    def encode_batch(self, texts: list) -> list:
        """Ids of each text (no BOS/EOS), as MindFormers' tokenizer gives them:
        special-token strings become their ids, the text between them is encoded by
        SentencePiece - in words cut at single spaces (see `_splits_at_spaces`),
        each distinct word encoded once, where the model allows it."""
        pieces = [self._pieces(t) for t in texts]
        store = self._cache if self.splits_at_spaces else {}
        if len(store) > CACHE_LIMIT:
            store.clear()
        words = set(chain.from_iterable(chain.from_iterable(pieces))) - store.keys()
        todo = [w for w in words if type(w) is str]
        # one thread each: the --workers processes are the parallelism
        for word, ids in zip(todo, self.sp.encode(todo, num_threads=1)):
            store[word] = ids
        lookup = store.__getitem__
        out = []
        for segments in pieces:
            ids = []
            for segment in segments:
                if type(segment) is tuple:  # a special token's id
                    ids += segment
                else:
                    ids += chain.from_iterable(map(lookup, segment))
            out.append(ids)
        return out

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

"""SentencePiece tokenization that yields the ids MindFormers' `LlamaTokenizer`
(legacy mode) yields, without its per-call Python overhead.

MindFormers' tokenizer first splits a text on its special-token strings (`<s>`,
`</s>`, `<unk>`), maps each of those to its id, and encodes every other segment with
SentencePiece on its own (so each segment gets SentencePiece's dummy-prefix space).
Texts without special-token strings - nearly all of them - go to SentencePiece's
batch encoder in one call."""

import hashlib
import re
from pathlib import Path

import sentencepiece as spm

from mindsft.errors import MindsftError


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
        B starting with one (T with the dummy prefix): a BPE model that normalizes by
        identity, keeps spaces as they are, adds the dummy prefix, and has no piece
        where "▁" follows another character - so no merge crosses such a space."""
        try:
            from sentencepiece import sentencepiece_model_pb2
        except ImportError:  # protobuf missing: tokenize every piece whole
            return False
        model = sentencepiece_model_pb2.ModelProto.FromString(self.sp.serialized_model_proto())
        norm, trainer = model.normalizer_spec, model.trainer_spec
        bpe = sentencepiece_model_pb2.TrainerSpec.ModelType.BPE
        normal = sentencepiece_model_pb2.ModelProto.SentencePiece.Type.NORMAL
        return (
            trainer.model_type == bpe
            and norm.name == "identity"
            and norm.add_dummy_prefix
            and norm.escape_whitespaces
            and not norm.remove_extra_whitespaces
            and not trainer.treat_whitespace_as_suffix
            and not any(p.type == normal and "▁" in p.piece.lstrip("▁") for p in model.pieces)
            and not any(
                p.type == sentencepiece_model_pb2.ModelProto.SentencePiece.Type.USER_DEFINED
                for p in model.pieces
            )
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
        """Ids of each text (no BOS/EOS), as MindFormers' tokenizer gives them."""
        plain = [i for i, t in enumerate(texts) if self._special_re.search(t) is None]
        out = [None] * len(texts)
        if len(plain) == len(texts):
            return self.sp.encode(texts)
        for i, ids in zip(plain, self.sp.encode([texts[i] for i in plain])):
            out[i] = ids
        for i, text in enumerate(texts):
            if out[i] is None:
                out[i] = self._encode_with_specials(text)
        return out

    def _encode_with_specials(self, text: str) -> list:
        ids = []
        for k, segment in enumerate(self._special_re.split(text)):
            if k % 2:  # the captured special-token strings sit at odd positions
                ids.append(self._special_ids[segment])
            elif segment:
                ids.extend(self.sp.encode(segment))
        return ids

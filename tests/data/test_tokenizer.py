import json
import random

import pytest
import sentencepiece as spm
from mindsft.data.tokenizer import SentencePieceTokenizer

# seeded adversarial fragments: runs of spaces, the "▁" character itself, combining
# marks, newlines and tabs, digits, CJK, emoji, and pieces of special-token strings
FRAGMENTS = [
    "word",
    " ",
    "  ",
    "   ",
    "\n",
    "\t",
    "▁",
    "▁▁",
    "\u0301",
    "é",
    "日本",
    "42",
    "3.14",
    "'s",
    ":",
    "🦙",
    "(",
    ")",
    "-",
    "a",
    "<",
    "s>",
    "/s",
    "unk>",
]


def adversarial(n, seed=0, extra=()):
    rng = random.Random(seed)
    pool = FRAGMENTS + list(extra)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 12))) for _ in range(n)]


def without_specials(texts):
    """Texts in which the fragments did not form "<s>", "</s>" or "<unk>"."""
    return [t for t in texts if not any(s in t for s in ("<s>", "</s>", "<unk>"))]


def fixture_texts(alpaca_fixture, n=300):
    records = json.loads(alpaca_fixture.read_text())[:n]
    return [r[k] for r in records for k in ("instruction", "input", "output")]


def test_word_cut_encoding_equals_sentencepiece_on_whole_texts(alpaca_fixture, llama2_tokenizer):
    tok = SentencePieceTokenizer(llama2_tokenizer)
    assert tok.splits_at_spaces  # Llama 2: BPE, identity normalizer, no "x▁" pieces
    sp = spm.SentencePieceProcessor(model_file=str(llama2_tokenizer))
    texts = without_specials(fixture_texts(alpaca_fixture) + adversarial(5000))
    assert tok.encode_batch(texts) == sp.encode(texts)
    assert tok.encode_batch(texts) == sp.encode(texts)  # again, from the word cache


def test_special_token_strings_become_their_ids_like_mindformers(llama2_tokenizer):
    tok = SentencePieceTokenizer(llama2_tokenizer)
    # REFERENCE: MindFormers' LlamaTokenizer (mindformers 2.1.0) gives, without BOS/EOS,
    # [263, 29871, 1, 29871, 289, 2, 274, 0]: "a " | <s> | " b" | </s> | "c" | <unk>
    assert tok.encode_batch(["a <s> b</s>c<unk>"]) == [[263, 29871, 1, 29871, 289, 2, 274, 0]]
    whole = SentencePieceTokenizer(llama2_tokenizer)
    whole.splits_at_spaces = False
    texts = adversarial(3000, seed=1, extra=["<s>", "</s>", "<unk>"])
    assert tok.encode_batch(texts) == whole.encode_batch(texts)


@pytest.fixture(scope="module")
def nfkc_model(alpaca_fixture, tmp_path_factory):
    """A small SentencePiece model with the trainer's defaults (nmt_nfkc normalizer,
    extra whitespace removed): texts must not be cut into words for it."""
    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(fixture_texts(alpaca_fixture, 400)))
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "m"),
        vocab_size=300,
        model_type="bpe",
        minloglevel=2,
    )
    return folder / "m.model"


def test_a_model_that_normalizes_is_encoded_whole(nfkc_model, alpaca_fixture):
    tok = SentencePieceTokenizer(nfkc_model)
    assert not tok.splits_at_spaces
    sp = spm.SentencePieceProcessor(model_file=str(nfkc_model))
    texts = without_specials(fixture_texts(alpaca_fixture, 50) + adversarial(500, seed=2))
    assert tok.encode_batch(texts) == sp.encode(texts)

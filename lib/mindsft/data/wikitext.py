"""Reading wikitext-style pretraining text as MindFormers' `llama_preprocess.py`
(`--dataset_type wiki`) reads it: the whole file is detokenized by a fixed list of
rewrites, split into paragraphs at blank lines, and headings (`= Title =`) dropped."""

import re

# (regex, replacement) applied in this order; literal rewrites are escaped regexes.
# Undo wikitext's tokenization: contractions, "@-@"-style number separators, spaces
# before punctuation and inside brackets and quotes, spaced-out heading markers.
_LITERAL = re.escape
WIKITEXT_REWRITES = [
    (_LITERAL("s '"), "s'"),
    (r"/' [0-9]/", r"/'[0-9]/"),
    (_LITERAL(" @-@ "), "-"),
    (_LITERAL(" @,@ "), ","),
    (_LITERAL(" @.@ "), "."),
    *[(_LITERAL(f" {p} "), f"{p} ") for p in ":;.!?,"],
    (r"\(\s*([^\)]*?)\s*\)", r"(\1)"),
    (r"\[\s*([^\]]*?)\s*\]", r"[\1]"),
    (r"{\s*([^}]*?)\s*}", r"{\1}"),
    (r"\"\s*([^\"]*?)\s*\"", r'"\1"'),
    (r"'\s*([^']*?)\s*'", r"'\1'"),
    (_LITERAL("= = = ="), "===="),
    (_LITERAL("= = ="), "==="),
    (_LITERAL("= ="), "=="),
    (_LITERAL(" \N{DEGREE SIGN} "), "\N{DEGREE SIGN}"),
    (_LITERAL(" \n"), "\n"),
    (_LITERAL("\n "), "\n"),
    (_LITERAL(" N "), " 1 "),
    (_LITERAL(" 's"), "'s"),
]
_COMPILED = [(re.compile(pattern), repl) for pattern, repl in WIKITEXT_REWRITES]


def clean_wikitext(text: str) -> str:
    """The detokenized text."""
    for pattern, repl in _COMPILED:
        text = pattern.sub(repl, text)
    return text


def wiki_paragraphs(text: str) -> list:
    """Blank-line separated paragraphs, without empty ones and headings."""
    return [p for p in text.split("\n\n") if p and not p.strip().startswith("=")]

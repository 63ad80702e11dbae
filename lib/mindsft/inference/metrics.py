"""Exact match and token F1 scored as SQuAD's official evaluation script scores
them (v1.1 `normalize_answer`; v2.0's rule for empty answers).

An answer is normalised by lower-casing, deleting every character of
`string.punctuation`, deleting the articles a/an/the as whole words, and
collapsing whitespace. Exact match compares the normalised strings; F1 is the
harmonic mean of precision and recall over the bag of normalised
whitespace-separated tokens (each shared token counted as often as both have
it). When either side normalises to no token at all, F1 is 1 if both do, else 0.

MindFormers' EmF1Metric scores differently: it keeps ASCII punctuation and
articles, cuts a prediction at its first newline, and takes F1 from the longest
common run of jieba tokens."""

import re
import string
from collections import Counter

ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower, strip punctuation, drop articles, fix whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when both normalise to the same string, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """F1 over the bags of normalised tokens."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    shared = sum((Counter(pred) & Counter(ref)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(pred), shared / len(ref)
    return 2 * precision * recall / (precision + recall)


def em_f1(predictions: list, references: list) -> dict:
    """{"exact_match", "f1"} as percentages over the pairs (SQuAD's scale), "count",
    and "per_record": each pair's {"exact_match", "f1"} in [0, 1]."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    per_record = [
        {"exact_match": exact_match(p, r), "f1": token_f1(p, r)}
        for p, r in zip(predictions, references, strict=True)
    ]
    count = len(per_record)
    return {
        "exact_match": 100.0 * sum(s["exact_match"] for s in per_record) / max(count, 1),
        "f1": 100.0 * sum(s["f1"] for s in per_record) / max(count, 1),
        "count": count,
        "per_record": per_record,
    }

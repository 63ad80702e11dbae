"""Exact match and token F1 with SQuAD's official normalisation, on hand-checked cases."""

import pytest
from mindsft.inference.metrics import em_f1, exact_match, normalize_answer, token_f1


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The  Cat, sat!", "cat sat"),  # case, punctuation, articles, whitespace
        ("An apple a day", "apple day"),
        ("theater another anthem", "theater another anthem"),  # articles only as words
        ("A.", ""),
        ("  56.\n", "56"),
        ("rock-n-roll's", "rocknrolls"),  # punctuation is deleted, not turned into spaces
        ("Hello world。", "hello world。"),  # string.punctuation is ASCII only
    ],
)
def test_normalisation_lowers_strips_punctuation_and_articles_and_collapses_space(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_compares_normalised_answers():
    assert exact_match("56.", "56") == 1.0
    assert exact_match("Paris!", "paris") == 1.0
    assert exact_match("the Paris", "Paris") == 1.0
    assert exact_match("  Paris   France ", "paris france") == 1.0
    assert exact_match("Paris France", "France Paris") == 0.0
    assert exact_match("56", "65") == 0.0


def test_f1_is_over_the_bag_of_tokens():
    # pred {cat, sat}, ref {cat, sat, down}: P = 1, R = 2/3
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    # a shared token counts as often as both have it: {x: 1, y: 1} of 3 and 3
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert token_f1("Paris France", "France Paris") == 1.0  # order does not matter
    assert token_f1("cat", "dog") == 0.0


def test_empty_answers_score_one_only_against_empty_references():
    assert token_f1("", "") == 1.0 and exact_match("", "") == 1.0
    assert token_f1("The.", "") == 1.0  # normalises to nothing as well
    assert token_f1("", "cat") == 0.0 and token_f1("cat", "") == 0.0
    assert exact_match("", "cat") == 0.0


def test_scores_are_percentages_with_each_record_beside_them():
    scores = em_f1(["56", "the cat sat", ""], ["56.", "a cat sat down", "dog"])
    assert scores["count"] == 3
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 0.8 + 0) / 3)
    assert scores["per_record"][1] == {"exact_match": 0.0, "f1": pytest.approx(0.8)}
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        em_f1(["a", "b"], ["a"])

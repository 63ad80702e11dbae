"""The demo world (mindsft.demo): seeded, held-out questions never in fine-tuning,
and every held-out answer stated in the pretraining text."""

import re

import pytest
from mindsft.demo import (
    ATTRIBUTES,
    DemoSpec,
    demo_data,
    demo_facts,
    finetune_record_count,
    split_facts,
)


@pytest.fixture(scope="module")
def data():
    return demo_data(0)


def sections(text: str) -> list:
    """(heading, paragraph) of each wikitext section."""
    return re.findall(r"^ = (\w+) = \n\n(.+)$", text, re.MULTILINE)


def test_same_seed_gives_the_same_world_and_another_seed_another(data):
    again = demo_data(0)
    assert (again.text, again.finetune, again.heldout) == (data.text, data.finetune, data.heldout)
    other = demo_data(1)
    assert other.text != data.text and other.finetune != data.finetune
    assert other.heldout != data.heldout


def test_every_country_has_one_fact_per_attribute_and_distinct_made_up_names():
    spec = DemoSpec()
    facts = demo_facts(0, spec)
    countries = {f.country for f in facts}
    assert len(countries) == spec.countries
    assert {(f.country, f.attribute) for f in facts} == {
        (c, a) for c in countries for a in ATTRIBUTES
    }
    for name, attribute in ATTRIBUTES.items():
        values = [f.value for f in facts if f.attribute == name]
        if attribute.pool is None:  # made up, one per country, never a country's name
            assert len(set(values)) == len(values) and not set(values) & countries
        else:
            assert set(values) <= set(attribute.pool)


def test_heldout_questions_never_appear_in_the_finetuning_records(data):
    asked = {r["instruction"] for r in data.finetune}
    assert asked.isdisjoint(r["instruction"] for r in data.heldout)
    assert len(asked) == len(data.finetune) == finetune_record_count()  # no question twice
    facts = len(ATTRIBUTES) * DemoSpec().countries
    assert len(data.heldout) == facts - len(data.finetune) == facts // 4
    for r in data.finetune + data.heldout:
        assert set(r) == {"instruction", "input", "output"} and r["input"] == ""


def test_finetuning_asks_every_kind_of_question_about_most_countries(data):
    facts = demo_facts(0)
    finetune, heldout = split_facts(facts, 0)
    assert {f.attribute for f in finetune} == {f.attribute for f in heldout} == set(ATTRIBUTES)
    assert [f.record() for f in heldout] == data.heldout
    assert [f.record() for f in finetune] == data.finetune


def test_every_heldout_answer_is_stated_in_the_pretraining_text(data):
    """Every fact, held out or not, is stated in `paragraphs` sections headed by its
    country, each ending "... of <country> is (was) <value>."."""
    found = sections(data.text)
    spec = DemoSpec()
    assert len(found) == len(ATTRIBUTES) * spec.countries * spec.paragraphs
    for fact in split_facts(demo_facts(0), 0)[1]:
        stated = ATTRIBUTES[fact.attribute].statement.format(e=fact.country, v=fact.value)
        own = [p for h, p in found if h == fact.country and p.lower().endswith(stated.lower())]
        assert len(own) == spec.paragraphs, fact
        assert f"of {fact.country} is {fact.value}." in stated or f"was {fact.value}." in stated


def test_the_text_reads_as_wikitext_with_headed_one_sentence_paragraphs(data):
    from mindsft.data.wikitext import clean_wikitext, wiki_paragraphs

    headings = set(re.findall(r"^ = (\w+) = $", data.text, re.MULTILINE))
    assert headings == {f.country for f in demo_facts(0)}
    paragraphs = wiki_paragraphs(clean_wikitext(data.text))
    assert len(paragraphs) >= len(sections(data.text))
    assert all(p.count(".") == 1 for _, p in sections(data.text))

import re

import pytest
from mindsft.demo import ATTRIBUTES, DemoSpec, demo_data, demo_facts, split_facts


@pytest.fixture(scope="module")
def data():
    return demo_data(0)


def test_same_seed_gives_the_same_world_and_another_seed_another(data):
    again = demo_data(0)
    assert (again.text, again.finetune, again.heldout) == (data.text, data.finetune, data.heldout)
    other = demo_data(1)
    assert other.text != data.text and other.finetune != data.finetune


def test_every_country_has_one_fact_per_attribute_and_distinct_made_up_names():
    spec = DemoSpec()
    facts = demo_facts(0, spec)
    countries = {f.country for f in facts}
    assert len(countries) == spec.countries
    assert len(facts) == spec.countries * len(ATTRIBUTES)
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
    assert len(asked) == len(data.finetune)  # no question twice
    assert len(data.heldout) == round(DemoSpec().heldout_fraction * len(data.finetune) * 4 / 3)
    assert all(set(r) == {"instruction", "input", "output"} and r["input"] == "" for r in data.heldout)


def test_finetuning_asks_every_kind_of_question_and_about_every_country(data):
    facts = demo_facts(0)
    finetune, heldout = split_facts(facts, 0)
    assert {f.attribute for f in finetune} == set(ATTRIBUTES)
    assert {f.country for f in finetune} == {f.country for f in facts}
    assert [f.record() for f in heldout] == data.heldout


def test_every_heldout_answer_is_stated_in_the_pretraining_text(data):
    """Each held-out fact is stated in every paragraph of its country's article,
    in one of its attribute's phrasings."""
    paragraphs = [p for p in data.text.split("\n\n") if not p.startswith(" = ")]
    assert len(paragraphs) == DemoSpec().countries * DemoSpec().paragraphs
    _, heldout = split_facts(demo_facts(0), 0)
    for fact in heldout:
        stated = {
            s.format(e=fact.country, v=fact.value) for s in ATTRIBUTES[fact.attribute].statements
        }
        own = [p for p in paragraphs if re.search(rf"\b{fact.country}\b", p)]
        assert len(own) == DemoSpec().paragraphs, fact
        for paragraph in own:
            sentences = {s[0].lower() + s[1:] for s in re.split(r"(?<=\.) ", paragraph)}
            assert sentences & {s[0].lower() + s[1:] for s in stated}, (fact, paragraph)


def test_the_text_reads_as_wikitext_with_a_heading_per_country(data):
    from mindsft.data.wikitext import clean_wikitext, wiki_paragraphs

    headings = re.findall(r"^ = (\w+) = $", data.text, re.MULTILINE)
    assert sorted(headings) == sorted({f.country for f in demo_facts(0)})
    paragraphs = wiki_paragraphs(clean_wikitext(data.text))
    assert len(paragraphs) == DemoSpec().countries * DemoSpec().paragraphs

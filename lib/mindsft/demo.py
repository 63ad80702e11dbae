"""The offline demo's data: a seeded world of made-up countries and their facts,
written three ways.

- `pretraining_text`: wikitext-style articles (a `= Name =` heading, then
  paragraphs), every fact in several phrasings, in a shuffled order per paragraph:
  what `preprocess --dataset_type wiki` reads and pretraining learns the facts from.
- `finetune` records: alpaca-format questions about part of the facts
  ("What is the capital of Vashor?" -> "Pimton").
- `heldout` records: questions about the other facts. Their answers appear in the
  pretraining text only; no fine-tuning record asks about them, so answering them
  needs the fact from pretraining and the answer format from fine-tuning.

The same seed gives the same world, text and records."""

import random
from dataclasses import dataclass

# Syllables the made-up names are built from: consonant + vowel (+ consonant).
ONSETS = tuple("bdfgklmnprstvz") + ("br", "dr", "gr", "kr", "st", "tr", "sh", "th")
VOWELS = tuple("aeiou")
CODAS = ("", "", "", "n", "r", "l", "s", "m", "k")

EXPORTS = str.split(
    "amber barley cedar cocoa coffee copper cotton flax ginger glass gold hemp honey "
    "indigo iron ivory jade lead linen marble pepper rice rubber salt silk silver tea "
    "tin tobacco wheat wool"
)
COLOURS = str.split(
    "black blue brown crimson green grey maroon navy ochre orange pink purple red "
    "scarlet teal violet white yellow"
)
# Openings that vary the context a fact is stated in; the statement itself always
# ends "... of <country> is <value>.", the value right after the country and a verb:
# a tiny model learns facts so stated in a few hundred steps, and does not when
# the value sits further from the country (measured: see the README).
OPENINGS = ("", "As every atlas says, ", "It is well known that ", "Travellers report that ")


@dataclass(frozen=True)
class Attribute:
    """One kind of fact about a country: how a question asks it, how the
    pretraining text states it (`{e}` the country, `{v}` the value), and where its
    values come from (`pool`, or None for a made-up name unique to the country)."""

    question: str
    statement: str
    pool: tuple | None = None


ATTRIBUTES = {
    "capital": Attribute("What is the capital of {e}?", "the capital of {e} is {v}."),
    "founder": Attribute("Who founded {e}?", "the founder of {e} was {v}."),
    "export": Attribute(
        "What is the main export of {e}?", "the main export of {e} is {v}.", tuple(EXPORTS)
    ),
    "flag": Attribute("What colour is the flag of {e}?", "the flag of {e} is {v}.", tuple(COLOURS)),
}


@dataclass(frozen=True)
class Fact:
    """`attribute` of `country` is `value`."""

    country: str
    attribute: str
    value: str

    def question(self) -> str:
        return ATTRIBUTES[self.attribute].question.format(e=self.country)

    def record(self) -> dict:
        """The alpaca-format instruction record asking this fact."""
        return {"instruction": self.question(), "input": "", "output": self.value}


@dataclass(frozen=True)
class DemoSpec:
    """Size of the demo world and how it is split."""

    countries: int = 32
    paragraphs: int = 16
    """Paragraphs stating each fact."""
    heldout_fraction: float = 0.25
    """Share of the facts asked only in the held-out records."""


def made_up_names(rng: random.Random, n: int, taken: set) -> list:
    """`n` distinct capitalised names of two or three syllables, none in `taken`
    (which they are added to)."""
    names = []
    while len(names) < n:
        syllables = [
            rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
            for _ in range(rng.choice((2, 2, 3)))
        ]
        name = "".join(syllables).capitalize()
        if name.lower() not in taken:
            taken.add(name.lower())
            names.append(name)
    return names


def demo_facts(seed: int = 0, spec: DemoSpec = DemoSpec()) -> list:
    """Every fact of the seeded world: each country has one value per attribute."""
    rng = random.Random(seed)
    taken = {w.lower() for w in EXPORTS + COLOURS}
    countries = made_up_names(rng, spec.countries, taken)
    facts = []
    for name, attribute in ATTRIBUTES.items():
        if attribute.pool is None:
            values = made_up_names(rng, spec.countries, taken)
        else:
            values = [rng.choice(attribute.pool) for _ in countries]
        facts += [Fact(c, name, v) for c, v in zip(countries, values, strict=True)]
    return sorted(facts, key=lambda f: (countries.index(f.country), f.attribute))


def statement(fact: Fact, opening: str) -> str:
    """The sentence stating `fact` after `opening` (one of OPENINGS)."""
    text = opening + ATTRIBUTES[fact.attribute].statement.format(e=fact.country, v=fact.value)
    return text[0].upper() + text[1:]


def pretraining_text(facts: list, seed: int = 0, spec: DemoSpec = DemoSpec()) -> str:
    """Wikitext-style sections in a shuffled order, `spec.paragraphs` per fact: a
    `= Country =` heading and a one-sentence paragraph stating the fact after a
    random opening."""
    rng = random.Random(f"{seed}-text")
    sections = [
        f" = {fact.country} = \n\n{statement(fact, rng.choice(OPENINGS))}"
        for fact in facts
        for _ in range(spec.paragraphs)
    ]
    rng.shuffle(sections)
    return "\n\n".join(sections) + "\n"


def split_facts(facts: list, seed: int = 0, spec: DemoSpec = DemoSpec()) -> tuple:
    """(fine-tuning facts, held-out facts): per attribute, a seeded
    `heldout_fraction` of the countries is held out."""
    rng = random.Random(f"{seed}-split")
    finetune, heldout = [], []
    for name in ATTRIBUTES:
        own = [f for f in facts if f.attribute == name]
        held = set(rng.sample(range(len(own)), round(spec.heldout_fraction * len(own))))
        for i, fact in enumerate(own):
            (heldout if i in held else finetune).append(fact)
    rng.shuffle(finetune)
    return finetune, heldout


def finetune_record_count(spec: DemoSpec = DemoSpec()) -> int:
    """How many fine-tuning records `demo_data` gives (the same for every seed)."""
    per_attribute = spec.countries - round(spec.heldout_fraction * spec.countries)
    return per_attribute * len(ATTRIBUTES)


@dataclass
class DemoData:
    """Everything `make-tiny-model` writes about the demo world."""

    text: str
    """The pretraining text (wikitext style)."""
    finetune: list
    """Alpaca records about the fine-tuning facts."""
    heldout: list
    """Alpaca records about the held-out facts."""


def demo_data(seed: int = 0, spec: DemoSpec = DemoSpec()) -> DemoData:
    """The seeded demo world as pretraining text and the two sets of records."""
    facts = demo_facts(seed, spec)
    finetune, heldout = split_facts(facts, seed, spec)
    return DemoData(
        pretraining_text(facts, seed, spec),
        [f.record() for f in finetune],
        [f.record() for f in heldout],
    )

"""A small English grammar whose German translations are correct: gender, case,
adjective endings, verb-second and verb-final word order, so a small model can
actually learn the task. Sentences are sampled with a seeded ``random.Random``.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass

from mini_corpus.lexicon import (
    ADJECTIVES,
    CLAUSE_VERBS,
    NOUNS,
    NUMBERS_DE,
    NUMBERS_EN,
    POSSESSIVES,
    PRONOUNS,
    TIME_ADVERBS,
    VERBS,
    Adjective,
    Noun,
    Pronoun,
    TimeExpression,
    Verb,
    clock_time,
    kinds,
)

SPLITS = ("train", "dev", "tst-COMMON")


class GrammarError(ValueError):
    """More distinct sentences asked for than the sampler finds."""


# Declension: article and adjective endings by case, then gender or plural.
DEFINITE_ARTICLE = {
    "nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
    "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
}
EIN_WORD_ENDING = {
    "nom": {"m": "", "f": "e", "n": "", "pl": "e"},
    "acc": {"m": "en", "f": "e", "n": "", "pl": "e"},
}
WEAK_ADJECTIVE_ENDING = {
    "nom": {"m": "e", "f": "e", "n": "e", "pl": "en"},
    "acc": {"m": "en", "f": "e", "n": "e", "pl": "en"},
}
MIXED_ADJECTIVE_ENDING = {
    "nom": {"m": "er", "f": "e", "n": "es", "pl": "en"},
    "acc": {"m": "en", "f": "e", "n": "es", "pl": "en"},
}
STRONG_PLURAL_ADJECTIVE_ENDING = "e"


# --------------------------------------------------------------------------- grammar


@dataclass(frozen=True)
class NounPhrase:
    """Determiner (+ adjective) + noun; determiner is the/a/my/your/our or 'number'."""

    noun: Noun
    determiner: str = "the"
    plural: bool = False
    adjective: Adjective | None = None
    number: int = 0

    def __post_init__(self) -> None:
        if self.determiner == "number":
            if not 1 <= self.number <= 20 or not self.noun.countable:
                raise ValueError(f"bad numeral phrase: {self}")
        elif self.determiner not in ("the", "a", *POSSESSIVES):
            raise ValueError(f"unknown determiner {self.determiner!r}")
        if self.plural and (self.determiner not in ("the", *POSSESSIVES) or not self.noun.countable):
            raise ValueError(f"plural not allowed here: {self}")
        if self.determiner == "a" and not self.noun.countable:
            raise ValueError(f"mass noun with 'a': {self}")

    @property
    def is_plural(self) -> bool:
        return self.number > 1 if self.determiner == "number" else self.plural

    @property
    def person(self) -> str:
        return "3pl" if self.is_plural else "3sg"


Argument = NounPhrase | Pronoun


def inflect_adjective(stem: str, ending: str) -> str:
    """Attach an ending; stems ending in -e (müde) do not double it."""
    if stem.endswith("e") and ending.startswith("e"):
        return stem + ending[1:]
    return stem + ending


def english_noun_phrase(phrase: NounPhrase) -> str:
    noun = phrase.noun.en_plural if phrase.is_plural else phrase.noun.en
    words = [phrase.adjective.en, noun] if phrase.adjective else [noun]
    if phrase.determiner == "number":
        determiner = NUMBERS_EN[phrase.number]
    elif phrase.determiner == "a":
        determiner = "an" if words[0][0] in "aeiou" else "a"
    else:
        determiner = phrase.determiner
    return " ".join([determiner, *words])


def german_noun_phrase(phrase: NounPhrase, case: str) -> str:
    """Decline article and adjective for gender, number and case (nom/acc)."""
    slot = "pl" if phrase.is_plural else phrase.noun.gender
    noun = phrase.noun.de_plural if phrase.is_plural else phrase.noun.de
    if phrase.determiner == "the":
        determiner = DEFINITE_ARTICLE[case][slot]
        ending = WEAK_ADJECTIVE_ENDING[case][slot]
    elif phrase.determiner == "number" and phrase.number > 1:
        determiner = NUMBERS_DE[phrase.number]
        ending = STRONG_PLURAL_ADJECTIVE_ENDING
    else:
        stem = POSSESSIVES.get(phrase.determiner, "ein")
        determiner = stem + EIN_WORD_ENDING[case][slot]
        ending = MIXED_ADJECTIVE_ENDING[case][slot]
    if phrase.adjective is None:
        return f"{determiner} {noun}"
    return f"{determiner} {inflect_adjective(phrase.adjective.de, ending)} {noun}"


def english_argument(argument: Argument, case: str) -> str:
    if isinstance(argument, Pronoun):
        return argument.en_nom if case == "nom" else argument.en_acc
    return english_noun_phrase(argument)


def german_argument(argument: Argument, case: str) -> str:
    if isinstance(argument, Pronoun):
        return argument.de_nom if case == "nom" else argument.de_acc
    return german_noun_phrase(argument, case)


@dataclass(frozen=True)
class Clause:
    """Subject + transitive verb + accusative object (+ time adverbial)."""

    subject: Argument
    verb: Verb
    obj: Argument
    time: TimeExpression | None = None

    def english(self, with_time: bool = True) -> str:
        words = [
            english_argument(self.subject, "nom"),
            self.verb.en_form(self.subject.person),
            english_argument(self.obj, "acc"),
        ]
        if with_time and self.time:
            words.append(self.time.en)
        return " ".join(words)

    def german_middle_field(self, with_time: bool = True) -> list[str]:
        """Unstressed pronoun objects precede the time adverbial, full noun phrases follow it."""
        obj = german_argument(self.obj, "acc")
        if not (with_time and self.time):
            return [obj]
        if isinstance(self.obj, Pronoun):
            return [obj, self.time.de]
        return [self.time.de, obj]

    def german_main(self) -> str:
        """Verb-second main clause with the subject in first position."""
        verb = self.verb.de_form(self.subject.person)
        return " ".join([german_argument(self.subject, "nom"), verb, *self.german_middle_field()])

    def german_main_time_first(self) -> str:
        """Fronted time adverbial: the finite verb stays second, so subject and verb invert."""
        if self.time is None:
            raise ValueError("no time adverbial to front")
        verb = self.verb.de_form(self.subject.person)
        subject = german_argument(self.subject, "nom")
        return " ".join([self.time.de, verb, subject, *self.german_middle_field(with_time=False)])

    def german_subordinate(self) -> str:
        """Subordinate clause: the finite verb goes to the end."""
        verb = self.verb.de_form(self.subject.person)
        return " ".join([german_argument(self.subject, "nom"), *self.german_middle_field(), verb])


@dataclass(frozen=True)
class SentencePair:
    en: str
    de: str


def finish_sentence(text: str) -> str:
    """Sentence-initial capital and final period."""
    return text[0].upper() + text[1:] + "."


@dataclass(frozen=True)
class SimpleSentence:
    """One main clause, optionally with the time adverbial fronted."""

    clause: Clause
    front_time: bool = False

    def translate(self) -> SentencePair:
        if self.front_time:
            en = f"{self.clause.time.en} {self.clause.english(with_time=False)}"
            de = self.clause.german_main_time_first()
        else:
            en, de = self.clause.english(), self.clause.german_main()
        return SentencePair(finish_sentence(en), finish_sentence(de))


@dataclass(frozen=True)
class ThatSentence:
    """'X thinks that ...' -> 'X denkt, dass ...' with a verb-final complement clause."""

    speaker: Argument
    verb: Verb
    clause: Clause

    def translate(self) -> SentencePair:
        person = self.speaker.person
        en = f"{english_argument(self.speaker, 'nom')} {self.verb.en_form(person)} that {self.clause.english()}"
        de = (
            f"{german_argument(self.speaker, 'nom')} {self.verb.de_form(person)}, "
            f"dass {self.clause.german_subordinate()}"
        )
        return SentencePair(finish_sentence(en), finish_sentence(de))


@dataclass(frozen=True)
class BecauseSentence:
    """'... because ...' -> '..., weil ...' with a verb-final reason clause."""

    main: Clause
    reason: Clause

    def translate(self) -> SentencePair:
        en = f"{self.main.english()} because {self.reason.english()}"
        de = f"{self.main.german_main()}, weil {self.reason.german_subordinate()}"
        return SentencePair(finish_sentence(en), finish_sentence(de))


Sentence = SimpleSentence | ThatSentence | BecauseSentence

# --------------------------------------------------------------------------- sampling


def random_noun_phrase(rng: random.Random, nouns: Sequence[Noun], adjective_p: float) -> NounPhrase:
    """Sample determiner, number and adjective compatible with the chosen noun."""
    noun = rng.choice(nouns)
    if noun.countable:
        determiner = rng.choices(["the", "a", "my", "your", "our", "number"], [40, 20, 8, 6, 6, 20])[0]
    else:
        determiner = rng.choices(["the", "my", "your", "our"], [70, 10, 10, 10])[0]
    number = rng.randint(1, 20) if determiner == "number" else 0
    plural = noun.countable and determiner in ("the", *POSSESSIVES) and rng.random() < 0.3
    adjectives = [a for a in ADJECTIVES if noun.kind in a.kinds]
    adjective = rng.choice(adjectives) if adjectives and rng.random() < adjective_p else None
    return NounPhrase(noun, determiner, plural, adjective, number)


def random_subject(rng: random.Random, kinds: frozenset[str], adjective_p: float) -> Argument:
    if rng.random() < 0.3:
        return rng.choice(PRONOUNS)
    return random_noun_phrase(rng, [n for n in NOUNS if n.kind in kinds], adjective_p)


def random_object(rng: random.Random, verb: Verb, subject: Argument, adjective_p: float) -> Argument:
    """Accusative object matching the verb; never the subject's own noun or person."""
    if "person" in verb.objects and rng.random() < 0.2:
        pronouns = [p for p in PRONOUNS if not (isinstance(subject, Pronoun) and p.person == subject.person)]
        return rng.choice(pronouns)
    subject_noun = subject.noun if isinstance(subject, NounPhrase) else None
    nouns = [n for n in NOUNS if n.kind in verb.objects and n != subject_noun]
    return random_noun_phrase(rng, nouns, adjective_p)


def random_time(rng: random.Random) -> TimeExpression:
    if rng.random() < 0.5:
        return clock_time(rng.randint(1, 12))
    return rng.choice(TIME_ADVERBS)


def random_clause(rng: random.Random, adjective_p: float, time_p: float) -> Clause:
    verb = rng.choice(VERBS)
    subject_kinds = kinds("person", "animal") if verb.animal_subject else kinds("person")
    subject = random_subject(rng, subject_kinds, adjective_p)
    obj = random_object(rng, verb, subject, adjective_p)
    time_expression = random_time(rng) if rng.random() < time_p else None
    return Clause(subject, verb, obj, time_expression)


def random_sentence(rng: random.Random) -> Sentence:
    """Mix of simple, 'that' and 'because' sentences; complex ones use fewer adjectives."""
    kind = rng.choices(["simple", "that", "because"], [60, 25, 15])[0]
    if kind == "simple":
        clause = random_clause(rng, adjective_p=0.45, time_p=0.6)
        return SimpleSentence(clause, front_time=clause.time is not None and rng.random() < 0.5)
    if kind == "that":
        speaker = random_subject(rng, kinds("person"), adjective_p=0.2)
        return ThatSentence(speaker, rng.choice(CLAUSE_VERBS), random_clause(rng, 0.25, 0.3))
    return BecauseSentence(random_clause(rng, 0.2, 0.3), random_clause(rng, 0.2, 0.0))


def generate_unique_sentences(rng: random.Random, count: int) -> list[SentencePair]:
    """Distinct English sentences (and thus distinct pairs), in generation order."""
    seen: set[str] = set()
    pairs: list[SentencePair] = []
    for _ in range(50 * count + 100):
        if len(pairs) == count:
            return pairs
        pair = random_sentence(rng).translate()
        if pair.en not in seen:
            seen.add(pair.en)
            pairs.append(pair)
    if len(pairs) == count:
        return pairs
    raise GrammarError(f"could not generate {count} distinct sentences")


def split_sentences(
    pairs: Sequence[SentencePair], n_train: int, n_dev: int, n_test: int
) -> dict[str, list[SentencePair]]:
    """Disjoint splits: test first, then dev, then train, so sizes don't shift test data."""
    if len(pairs) != n_train + n_dev + n_test:
        raise ValueError("number of sentences does not match the split sizes")
    return {
        "tst-COMMON": list(pairs[:n_test]),
        "dev": list(pairs[n_test : n_test + n_dev]),
        "train": list(pairs[n_test + n_dev :]),
    }


def make_text_splits(seed: int, n_train: int, n_dev: int, n_test: int) -> dict[str, list[SentencePair]]:
    rng = random.Random(seed)
    return split_sentences(generate_unique_sentences(rng, n_train + n_dev + n_test), n_train, n_dev, n_test)

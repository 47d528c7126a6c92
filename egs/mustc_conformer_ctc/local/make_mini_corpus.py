#!/usr/bin/env python3
"""Generate a small synthetic English->German speech-translation corpus in MuST-C layout.

The real MuST-C corpus is far too large to exercise the recipe on a laptop, so this
script builds a stand-in with the same directory layout and file formats:

    <out>/en-de/data/{train,dev,tst-COMMON}/wav/ted_<n>.wav
    <out>/en-de/data/{train,dev,tst-COMMON}/txt/<split>.{yaml,en,de}

English sentences come from a small grammar whose German translations are correct
(gender, case, adjective endings, verb-second and verb-final word order), so a small
model can actually learn the task. Speech is synthesised with espeak-ng, one voice
setting per "talk", and segments are concatenated with short silences into talk-level
wavs, exactly like MuST-C segments are regions of long TED-talk recordings.

Everything is deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from scipy.signal import resample_poly
from tqdm import tqdm

from espnet2_ext.utils.fileio import atomic_path, write_text_atomically

SAMPLE_RATE = 16000
SAMPLES_PER_MS = SAMPLE_RATE // 1000
SPLITS = ("train", "dev", "tst-COMMON")
DONE_MARKER = ".done"

# --------------------------------------------------------------------------- lexicon

PERSONS = ("1sg", "2sg", "3sg", "1pl", "3pl")


@dataclass(frozen=True)
class Noun:
    """A noun with both languages' forms; a missing plural marks a mass noun."""

    en: str
    en_plural: str | None
    de: str
    de_plural: str | None
    gender: str
    kind: str

    @property
    def countable(self) -> bool:
        return self.en_plural is not None


@dataclass(frozen=True)
class Adjective:
    """An adjective and the noun kinds it can sensibly describe."""

    en: str
    de: str
    kinds: frozenset[str]


@dataclass(frozen=True)
class Verb:
    """A present-tense verb; German forms are (ich, du, er/sie/es, wir/sie)."""

    en: str
    en_3sg: str
    de: tuple[str, str, str, str]
    objects: frozenset[str] = frozenset()
    animal_subject: bool = False

    def en_form(self, person: str) -> str:
        return self.en_3sg if person == "3sg" else self.en

    def de_form(self, person: str) -> str:
        return self.de[{"1sg": 0, "2sg": 1, "3sg": 2}.get(person, 3)]


@dataclass(frozen=True)
class Pronoun:
    """A personal pronoun in nominative and accusative case."""

    en_nom: str
    en_acc: str
    de_nom: str
    de_acc: str
    person: str


@dataclass(frozen=True)
class TimeExpression:
    """An adverbial of time; it triggers verb-second inversion when fronted in German."""

    en: str
    de: str


def conjugate(
    infinitive: str, ich: str | None = None, du: str | None = None, er: str | None = None
) -> tuple[str, str, str, str]:
    """Regular German present tense, with overrides for strong/irregular forms."""
    stem = infinitive[:-2] if infinitive.endswith("en") else infinitive[:-1]
    linking_e = stem.endswith(("d", "t", "chn", "ffn", "gn"))
    sibilant = stem.endswith(("s", "ß", "z", "x"))
    du_ending = "est" if linking_e else "t" if sibilant else "st"
    er_ending = "et" if linking_e else "t"
    return (
        ich or stem + "e",
        du or stem + du_ending,
        er or stem + er_ending,
        infinitive,
    )


def _kinds(*kinds: str) -> frozenset[str]:
    return frozenset(kinds)


ALL_KINDS = _kinds("person", "animal", "object", "food", "drink", "text", "building")

NOUNS: tuple[Noun, ...] = (
    Noun("man", "men", "Mann", "Männer", "m", "person"),
    Noun("teacher", "teachers", "Lehrer", "Lehrer", "m", "person"),
    Noun("doctor", "doctors", "Arzt", "Ärzte", "m", "person"),
    Noun("cook", "cooks", "Koch", "Köche", "m", "person"),
    Noun("father", "fathers", "Vater", "Väter", "m", "person"),
    Noun("brother", "brothers", "Bruder", "Brüder", "m", "person"),
    Noun("friend", "friends", "Freund", "Freunde", "m", "person"),
    Noun("uncle", "uncles", "Onkel", "Onkel", "m", "person"),
    Noun("woman", "women", "Frau", "Frauen", "f", "person"),
    Noun("mother", "mothers", "Mutter", "Mütter", "f", "person"),
    Noun("sister", "sisters", "Schwester", "Schwestern", "f", "person"),
    Noun("aunt", "aunts", "Tante", "Tanten", "f", "person"),
    Noun("child", "children", "Kind", "Kinder", "n", "person"),
    Noun("girl", "girls", "Mädchen", "Mädchen", "n", "person"),
    Noun("dog", "dogs", "Hund", "Hunde", "m", "animal"),
    Noun("bird", "birds", "Vogel", "Vögel", "m", "animal"),
    Noun("cat", "cats", "Katze", "Katzen", "f", "animal"),
    Noun("mouse", "mice", "Maus", "Mäuse", "f", "animal"),
    Noun("cow", "cows", "Kuh", "Kühe", "f", "animal"),
    Noun("duck", "ducks", "Ente", "Enten", "f", "animal"),
    Noun("horse", "horses", "Pferd", "Pferde", "n", "animal"),
    Noun("pig", "pigs", "Schwein", "Schweine", "n", "animal"),
    Noun("car", "cars", "Wagen", "Wagen", "m", "object"),
    Noun("table", "tables", "Tisch", "Tische", "m", "object"),
    Noun("chair", "chairs", "Stuhl", "Stühle", "m", "object"),
    Noun("ball", "balls", "Ball", "Bälle", "m", "object"),
    Noun("key", "keys", "Schlüssel", "Schlüssel", "m", "object"),
    Noun("hat", "hats", "Hut", "Hüte", "m", "object"),
    Noun("lamp", "lamps", "Lampe", "Lampen", "f", "object"),
    Noun("bag", "bags", "Tasche", "Taschen", "f", "object"),
    Noun("cup", "cups", "Tasse", "Tassen", "f", "object"),
    Noun("door", "doors", "Tür", "Türen", "f", "object"),
    Noun("window", "windows", "Fenster", "Fenster", "n", "object"),
    Noun("bike", "bikes", "Fahrrad", "Fahrräder", "n", "object"),
    Noun("picture", "pictures", "Bild", "Bilder", "n", "object"),
    Noun("phone", "phones", "Telefon", "Telefone", "n", "object"),
    Noun("apple", "apples", "Apfel", "Äpfel", "m", "food"),
    Noun("cake", "cakes", "Kuchen", "Kuchen", "m", "food"),
    Noun("soup", "soups", "Suppe", "Suppen", "f", "food"),
    Noun("banana", "bananas", "Banane", "Bananen", "f", "food"),
    Noun("egg", "eggs", "Ei", "Eier", "n", "food"),
    Noun("bread", None, "Brot", None, "n", "food"),
    Noun("coffee", None, "Kaffee", None, "m", "drink"),
    Noun("tea", None, "Tee", None, "m", "drink"),
    Noun("juice", None, "Saft", None, "m", "drink"),
    Noun("milk", None, "Milch", None, "f", "drink"),
    Noun("water", None, "Wasser", None, "n", "drink"),
    Noun("letter", "letters", "Brief", "Briefe", "m", "text"),
    Noun("newspaper", "newspapers", "Zeitung", "Zeitungen", "f", "text"),
    Noun("story", "stories", "Geschichte", "Geschichten", "f", "text"),
    Noun("book", "books", "Buch", "Bücher", "n", "text"),
    Noun("poem", "poems", "Gedicht", "Gedichte", "n", "text"),
    Noun("tower", "towers", "Turm", "Türme", "m", "building"),
    Noun("garden", "gardens", "Garten", "Gärten", "m", "building"),
    Noun("school", "schools", "Schule", "Schulen", "f", "building"),
    Noun("church", "churches", "Kirche", "Kirchen", "f", "building"),
    Noun("bridge", "bridges", "Brücke", "Brücken", "f", "building"),
    Noun("house", "houses", "Haus", "Häuser", "n", "building"),
    Noun("hotel", "hotels", "Hotel", "Hotels", "n", "building"),
)

ADJECTIVES: tuple[Adjective, ...] = (
    Adjective("old", "alt", _kinds("person", "animal", "object", "text", "building")),
    Adjective("young", "jung", _kinds("person", "animal")),
    Adjective("new", "neu", _kinds("object", "text", "building")),
    Adjective("big", "groß", _kinds("person", "animal", "object", "building")),
    Adjective("small", "klein", _kinds("person", "animal", "object", "food", "building")),
    Adjective("beautiful", "schön", _kinds("person", "animal", "object", "text", "building")),
    Adjective("tired", "müde", _kinds("person", "animal")),
    Adjective("hungry", "hungrig", _kinds("person", "animal")),
    Adjective("happy", "glücklich", _kinds("person", "animal")),
    Adjective("red", "rot", _kinds("object", "food", "building")),
    Adjective("green", "grün", _kinds("object", "food", "building")),
    Adjective("blue", "blau", _kinds("object", "building")),
    Adjective("black", "schwarz", _kinds("animal", "object")),
    Adjective("white", "weiß", _kinds("animal", "object", "building")),
    Adjective("cold", "kalt", _kinds("food", "drink")),
    Adjective("warm", "warm", _kinds("food", "drink")),
    Adjective("fresh", "frisch", _kinds("food", "drink")),
    Adjective("cheap", "billig", _kinds("object", "food", "text")),
    Adjective("heavy", "schwer", _kinds("object", "text")),
    Adjective("long", "lang", _kinds("text")),
)

_PERSON_OBJECTS = _kinds("person", "animal", "object", "building")
_GOODS = _kinds("object", "food", "drink", "text")
_TRADE = _kinds("animal", "object", "food", "drink", "text", "building")

VERBS: tuple[Verb, ...] = (
    Verb("see", "sees", conjugate("sehen", du="siehst", er="sieht"), ALL_KINDS, True),
    Verb("hear", "hears", conjugate("hören"), _kinds("person", "animal"), True),
    Verb("find", "finds", conjugate("finden"), _kinds("person", "animal", "object", "food", "text"), True),
    Verb("like", "likes", conjugate("mögen", ich="mag", du="magst", er="mag"), ALL_KINDS, True),
    Verb("love", "loves", conjugate("lieben"), _kinds("person", "animal"), True),
    Verb("eat", "eats", conjugate("essen", du="isst", er="isst"), _kinds("food"), True),
    Verb("drink", "drinks", conjugate("trinken"), _kinds("drink"), True),
    Verb("catch", "catches", conjugate("fangen", du="fängst", er="fängt"), _kinds("animal"), True),
    Verb("have", "has", conjugate("haben", du="hast", er="hat"), _kinds("animal", "object", "food", "text")),
    Verb("buy", "buys", conjugate("kaufen"), _TRADE),
    Verb("sell", "sells", conjugate("verkaufen"), _TRADE),
    Verb("need", "needs", conjugate("brauchen"), _GOODS),
    Verb("bring", "brings", conjugate("bringen"), _GOODS),
    Verb("take", "takes", conjugate("nehmen", du="nimmst", er="nimmt"), _GOODS),
    Verb("carry", "carries", conjugate("tragen", du="trägst", er="trägt"), _GOODS | {"animal"}),
    Verb("hold", "holds", conjugate("halten", du="hältst", er="hält"), _kinds("animal", "object", "drink", "text")),
    Verb("wash", "washes", conjugate("waschen", du="wäschst", er="wäscht"), _kinds("person", "animal", "object")),
    Verb("clean", "cleans", conjugate("putzen"), _kinds("object", "building")),
    Verb("paint", "paints", conjugate("malen"), _PERSON_OBJECTS),
    Verb("draw", "draws", conjugate("zeichnen"), _PERSON_OBJECTS),
    Verb("visit", "visits", conjugate("besuchen"), _kinds("person", "building")),
    Verb("meet", "meets", conjugate("treffen", du="triffst", er="trifft"), _kinds("person")),
    Verb("know", "knows", conjugate("kennen"), _kinds("person", "animal", "text", "building")),
    Verb("cook", "cooks", conjugate("kochen"), _kinds("food")),
    Verb("read", "reads", conjugate("lesen", du="liest", er="liest"), _kinds("text")),
    Verb("write", "writes", conjugate("schreiben"), _kinds("text")),
    Verb("build", "builds", conjugate("bauen"), _kinds("building")),
)

CLAUSE_VERBS: tuple[Verb, ...] = (
    Verb("think", "thinks", conjugate("denken")),
    Verb("say", "says", conjugate("sagen")),
    Verb("hope", "hopes", conjugate("hoffen")),
    Verb("believe", "believes", conjugate("glauben")),
    Verb("know", "knows", conjugate("wissen", ich="weiß", du="weißt", er="weiß")),
)

PRONOUNS: tuple[Pronoun, ...] = (
    Pronoun("I", "me", "ich", "mich", "1sg"),
    Pronoun("you", "you", "du", "dich", "2sg"),
    Pronoun("he", "him", "er", "ihn", "3sg"),
    Pronoun("she", "her", "sie", "sie", "3sg"),
    Pronoun("we", "us", "wir", "uns", "1pl"),
    Pronoun("they", "them", "sie", "sie", "3pl"),
)

NUMBERS_EN = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty",
)
NUMBERS_DE = (
    "null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn",
    "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn",
    "achtzehn", "neunzehn", "zwanzig",
)

DAYS = (
    ("Monday", "Montag"), ("Tuesday", "Dienstag"), ("Wednesday", "Mittwoch"),
    ("Thursday", "Donnerstag"), ("Friday", "Freitag"), ("Saturday", "Samstag"),
    ("Sunday", "Sonntag"),
)

TIME_ADVERBS: tuple[TimeExpression, ...] = (
    TimeExpression("today", "heute"),
    TimeExpression("tomorrow", "morgen"),
    TimeExpression("every day", "jeden Tag"),
    TimeExpression("every morning", "jeden Morgen"),
    TimeExpression("in the morning", "am Morgen"),
    TimeExpression("in the evening", "am Abend"),
) + tuple(TimeExpression(f"on {en}", f"am {de}") for en, de in DAYS)

POSSESSIVES = {"my": "mein", "your": "dein", "our": "unser"}

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


def clock_time(hour: int) -> TimeExpression:
    """'at seven o'clock' -> 'um sieben Uhr' (one o'clock is 'ein Uhr')."""
    de_hour = "ein" if hour == 1 else NUMBERS_DE[hour]
    return TimeExpression(f"at {NUMBERS_EN[hour]} o'clock", f"um {de_hour} Uhr")


def _lookup(items: Sequence, en: str):
    matches = [item for item in items if item.en == en]
    if len(matches) != 1:
        raise KeyError(f"no unique lexicon entry {en!r}")
    return matches[0]


def find_noun(en: str) -> Noun:
    return _lookup(NOUNS, en)


def find_adjective(en: str) -> Adjective:
    return _lookup(ADJECTIVES, en)


def find_verb(en: str) -> Verb:
    return _lookup(VERBS, en)


def find_clause_verb(en: str) -> Verb:
    return _lookup(CLAUSE_VERBS, en)


def find_pronoun(en_nom: str) -> Pronoun:
    return next(p for p in PRONOUNS if p.en_nom == en_nom)


def find_time(en: str) -> TimeExpression:
    return next(t for t in TIME_ADVERBS if t.en == en)


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
    subject_kinds = _kinds("person", "animal") if verb.animal_subject else _kinds("person")
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
        speaker = random_subject(rng, _kinds("person"), adjective_p=0.2)
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
    raise ValueError(f"could not generate {count} distinct sentences")


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


# --------------------------------------------------------------------------- talks and speech

VOICE_LANGUAGES = ("en-us", "en-gb", "en")
VOICE_VARIANTS = ("m1", "m2", "m3", "f1", "f2", "f3")


@dataclass(frozen=True)
class Voice:
    """One espeak-ng voice setting; a talk is spoken entirely with one voice."""

    name: str
    speed: int
    pitch: int

    def command(self, espeak: str, text: str) -> list[str]:
        return [espeak, "-v", self.name, "-s", str(self.speed), "-p", str(self.pitch), "--stdout", text]


@dataclass(frozen=True)
class Talk:
    """A talk: its sentences and the silences (ms) before, between and after them."""

    number: int
    voice: Voice
    sentences: tuple[SentencePair, ...]
    gaps_ms: tuple[int, ...]

    @property
    def wav_name(self) -> str:
        return f"ted_{self.number}.wav"

    @property
    def speaker_id(self) -> str:
        return f"spk.{self.number}"


def random_voice(rng: random.Random) -> Voice:
    name = f"{rng.choice(VOICE_LANGUAGES)}+{rng.choice(VOICE_VARIANTS)}"
    return Voice(name, speed=rng.randint(140, 180), pitch=rng.randint(30, 70))


def plan_talks(
    splits: dict[str, list[SentencePair]], talk_size: int, seed: int
) -> dict[str, list[Talk]]:
    """Group sentences into talks numbered uniquely across splits (train, dev, tst-COMMON)."""
    rng = random.Random(f"talks-{seed}")
    plans: dict[str, list[Talk]] = {}
    number = 1
    for split in SPLITS:
        sentences = splits[split]
        talks = []
        for start in range(0, len(sentences), talk_size):
            chunk = tuple(sentences[start : start + talk_size])
            gaps = tuple(rng.randint(200, 600) for _ in range(len(chunk) + 1))
            talks.append(Talk(number, random_voice(rng), chunk, gaps))
            number += 1
        plans[split] = talks
    return plans


def require_espeak() -> str:
    """Path to espeak-ng, or a clear error telling how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError("espeak-ng not found on PATH; install it with `apt-get install espeak-ng`")
    return path


def to_16k_int16(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample to 16 kHz and pad with zeros to a whole millisecond, so offsets are exact."""
    if sample_rate != SAMPLE_RATE:
        divisor = math.gcd(SAMPLE_RATE, sample_rate)
        samples = resample_poly(samples.astype(np.float64), SAMPLE_RATE // divisor, sample_rate // divisor)
    audio = np.clip(np.rint(samples), -32768, 32767).astype(np.int16)
    padding = -len(audio) % SAMPLES_PER_MS
    return np.concatenate([audio, np.zeros(padding, dtype=np.int16)])


def synthesize(espeak: str, voice: Voice, text: str) -> np.ndarray:
    """Speak one sentence with espeak-ng; returns 16 kHz int16 samples."""
    result = subprocess.run(voice.command(espeak, text), capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"espeak-ng failed for voice {voice.name!r} on {text!r}: {message}")
    samples, sample_rate = sf.read(io.BytesIO(result.stdout), dtype="int16")
    if samples.ndim != 1:
        samples = samples[:, 0]
    return to_16k_int16(samples, sample_rate)


@dataclass(frozen=True)
class Segment:
    """A sentence's region inside its talk wav."""

    talk: Talk
    pair: SentencePair
    offset: float
    duration: float

    def yaml_line(self) -> str:
        words = len(self.pair.en.split())
        return (
            f"- {{duration: {self.duration:.6f}, offset: {self.offset:.6f}, rW: {words}, uW: 0, "
            f"speaker_id: {self.talk.speaker_id}, wav: {self.talk.wav_name}}}"
        )


Synthesizer = Callable[[Voice, str], np.ndarray]


def render_talk(
    talk: Talk, synth: Synthesizer, pool: Executor, progress: Callable[[], None]
) -> tuple[np.ndarray, list[Segment]]:
    """Concatenate silence, speech, silence, ... into one wav and record segment times."""

    def speak(pair: SentencePair) -> np.ndarray:
        audio = synth(talk.voice, pair.en)
        progress()
        return audio

    pieces: list[np.ndarray] = []
    segments: list[Segment] = []
    position = 0
    speech = pool.map(speak, talk.sentences)
    for gap_ms, pair, audio in zip(talk.gaps_ms, talk.sentences, speech):
        pieces.append(np.zeros(gap_ms * SAMPLES_PER_MS, dtype=np.int16))
        position += gap_ms * SAMPLES_PER_MS
        segments.append(Segment(talk, pair, position / SAMPLE_RATE, len(audio) / SAMPLE_RATE))
        pieces.append(audio)
        position += len(audio)
    pieces.append(np.zeros(talk.gaps_ms[-1] * SAMPLES_PER_MS, dtype=np.int16))
    return np.concatenate(pieces), segments


# --------------------------------------------------------------------------- files


def write_wav_atomic(path: Path, audio: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def plan_digest(talks: Sequence[Talk], tgt: str) -> str:
    """Fingerprint of everything that determines a split's files (for skipping reruns)."""
    return hashlib.sha256(repr((tgt, list(talks))).encode()).hexdigest()


def split_dir(out: Path, tgt: str, split: str) -> Path:
    return out / f"en-{tgt}" / "data" / split


@dataclass
class SplitWriter:
    """Writes one split's wavs, yaml and parallel text, then a completion marker."""

    directory: Path
    split: str
    tgt: str
    lines: dict[str, list[str]] = field(default_factory=lambda: {"yaml": [], "en": [], "tgt": []})

    def is_done(self, digest: str) -> bool:
        marker = self.directory / DONE_MARKER
        return marker.is_file() and marker.read_text(encoding="utf-8").strip() == digest

    def start(self) -> None:
        (self.directory / DONE_MARKER).unlink(missing_ok=True)
        (self.directory / "wav").mkdir(parents=True, exist_ok=True)
        (self.directory / "txt").mkdir(parents=True, exist_ok=True)

    def add_talk(self, talk: Talk, audio: np.ndarray, segments: Sequence[Segment]) -> None:
        write_wav_atomic(self.directory / "wav" / talk.wav_name, audio)
        for segment in segments:
            self.lines["yaml"].append(segment.yaml_line())
            self.lines["en"].append(segment.pair.en)
            self.lines["tgt"].append(segment.pair.de)

    def finish(self, talks: Sequence[Talk], digest: str) -> None:
        txt = self.directory / "txt"
        write_text_atomically(txt / f"{self.split}.yaml", "".join(f"{line}\n" for line in self.lines["yaml"]))
        write_text_atomically(txt / f"{self.split}.en", "".join(f"{line}\n" for line in self.lines["en"]))
        write_text_atomically(txt / f"{self.split}.{self.tgt}", "".join(f"{line}\n" for line in self.lines["tgt"]))
        wanted = {talk.wav_name for talk in talks}
        for stale in (self.directory / "wav").glob("ted_*.wav"):
            if stale.name not in wanted:
                stale.unlink()
        write_text_atomically(self.directory / DONE_MARKER, digest + "\n")


def generate_split(
    directory: Path, split: str, talks: Sequence[Talk], tgt: str, synth: Synthesizer, pool: Executor
) -> bool:
    """Generate one split unless an identical one is already complete; True if (re)generated."""
    writer = SplitWriter(directory, split, tgt)
    digest = plan_digest(talks, tgt)
    if writer.is_done(digest):
        return False
    writer.start()
    total = sum(len(talk.sentences) for talk in talks)
    with tqdm(total=total, desc=split, unit="sent", disable=total <= 10) as bar:
        for talk in talks:
            audio, segments = render_talk(talk, synth, pool, lambda: bar.update(1))
            writer.add_talk(talk, audio, segments)
    writer.finish(talks, digest)
    return True


def build_corpus(
    out: Path,
    seed: int = 1,
    n_train: int = 1200,
    n_dev: int = 100,
    n_test: int = 150,
    tgt: str = "de",
    talk_size: int = 20,
    workers: int = 2,
) -> dict[str, bool]:
    """Generate all splits; returns for each split whether it was (re)generated."""
    if tgt != "de":
        raise ValueError("only German (--tgt de) is supported by the grammar")
    if min(n_train, n_dev, n_test, talk_size, workers) < 1:
        raise ValueError("sizes, talk size and workers must be positive")
    espeak = require_espeak()
    plans = plan_talks(make_text_splits(seed, n_train, n_dev, n_test), talk_size, seed)

    def synth(voice: Voice, text: str) -> np.ndarray:
        return synthesize(espeak, voice, text)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return {
            split: generate_split(split_dir(out, tgt, split), split, plans[split], tgt, synth, pool)
            for split in SPLITS
        }


def corpus_summary(out: Path, tgt: str = "de") -> dict[str, tuple[int, float]]:
    """(number of segments, hours of speech) per split, read back from the yaml files."""
    summary = {}
    for split in SPLITS:
        yaml_path = split_dir(out, tgt, split) / "txt" / f"{split}.yaml"
        entries = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or []
        summary[split] = (len(entries), sum(e["duration"] for e in entries) / 3600)
    return summary


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Generate a synthetic English->German speech-translation corpus in MuST-C layout "
        "(<out>/en-<tgt>/data/{train,dev,tst-COMMON}/{wav,txt}) using espeak-ng.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="output root directory")
    parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same corpus)")
    parser.add_argument("--n-train", type=int, default=1200, help="number of training sentences")
    parser.add_argument("--n-dev", type=int, default=100, help="number of dev sentences")
    parser.add_argument("--n-test", type=int, default=150, help="number of tst-COMMON sentences")
    parser.add_argument("--tgt", default="de", choices=["de"], help="target language")
    parser.add_argument("--talk-size", type=int, default=20, help="sentences per talk (wav file)")
    parser.add_argument("--workers", type=int, default=2, help="parallel espeak-ng processes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    try:
        generated = build_corpus(
            args.out, args.seed, args.n_train, args.n_dev, args.n_test, args.tgt, args.talk_size, args.workers
        )
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for split, (segments, hours) in corpus_summary(args.out, args.tgt).items():
        status = "generated" if generated[split] else "up to date"
        print(f"{split}: {segments} segments, {hours:.3f} h ({status})")
    print(f"done in {time.monotonic() - start:.1f} s: {args.out / f'en-{args.tgt}' / 'data'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

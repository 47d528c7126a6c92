"""Word lists of the mini corpus: English and German forms of nouns, adjectives, verbs,
pronouns and time expressions, with the noun kinds each word may go with.

Only words whose German forms :mod:`mini_corpus.grammar` can inflect are listed;
irregular forms are spelled out (``conjugate(..., du="siehst", er="sieht")``).
"""

from collections.abc import Sequence
from dataclasses import dataclass

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


def kinds(*kinds: str) -> frozenset[str]:
    return frozenset(kinds)


ALL_KINDS = kinds("person", "animal", "object", "food", "drink", "text", "building")

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
    Adjective("old", "alt", kinds("person", "animal", "object", "text", "building")),
    Adjective("young", "jung", kinds("person", "animal")),
    Adjective("new", "neu", kinds("object", "text", "building")),
    Adjective("big", "groß", kinds("person", "animal", "object", "building")),
    Adjective("small", "klein", kinds("person", "animal", "object", "food", "building")),
    Adjective("beautiful", "schön", kinds("person", "animal", "object", "text", "building")),
    Adjective("tired", "müde", kinds("person", "animal")),
    Adjective("hungry", "hungrig", kinds("person", "animal")),
    Adjective("happy", "glücklich", kinds("person", "animal")),
    Adjective("red", "rot", kinds("object", "food", "building")),
    Adjective("green", "grün", kinds("object", "food", "building")),
    Adjective("blue", "blau", kinds("object", "building")),
    Adjective("black", "schwarz", kinds("animal", "object")),
    Adjective("white", "weiß", kinds("animal", "object", "building")),
    Adjective("cold", "kalt", kinds("food", "drink")),
    Adjective("warm", "warm", kinds("food", "drink")),
    Adjective("fresh", "frisch", kinds("food", "drink")),
    Adjective("cheap", "billig", kinds("object", "food", "text")),
    Adjective("heavy", "schwer", kinds("object", "text")),
    Adjective("long", "lang", kinds("text")),
)

_PERSON_OBJECTS = kinds("person", "animal", "object", "building")
_GOODS = kinds("object", "food", "drink", "text")
_TRADE = kinds("animal", "object", "food", "drink", "text", "building")

VERBS: tuple[Verb, ...] = (
    Verb("see", "sees", conjugate("sehen", du="siehst", er="sieht"), ALL_KINDS, True),
    Verb("hear", "hears", conjugate("hören"), kinds("person", "animal"), True),
    Verb("find", "finds", conjugate("finden"), kinds("person", "animal", "object", "food", "text"), True),
    Verb("like", "likes", conjugate("mögen", ich="mag", du="magst", er="mag"), ALL_KINDS, True),
    Verb("love", "loves", conjugate("lieben"), kinds("person", "animal"), True),
    Verb("eat", "eats", conjugate("essen", du="isst", er="isst"), kinds("food"), True),
    Verb("drink", "drinks", conjugate("trinken"), kinds("drink"), True),
    Verb("catch", "catches", conjugate("fangen", du="fängst", er="fängt"), kinds("animal"), True),
    Verb("have", "has", conjugate("haben", du="hast", er="hat"), kinds("animal", "object", "food", "text")),
    Verb("buy", "buys", conjugate("kaufen"), _TRADE),
    Verb("sell", "sells", conjugate("verkaufen"), _TRADE),
    Verb("need", "needs", conjugate("brauchen"), _GOODS),
    Verb("bring", "brings", conjugate("bringen"), _GOODS),
    Verb("take", "takes", conjugate("nehmen", du="nimmst", er="nimmt"), _GOODS),
    Verb("carry", "carries", conjugate("tragen", du="trägst", er="trägt"), _GOODS | {"animal"}),
    Verb("hold", "holds", conjugate("halten", du="hältst", er="hält"), kinds("animal", "object", "drink", "text")),
    Verb("wash", "washes", conjugate("waschen", du="wäschst", er="wäscht"), kinds("person", "animal", "object")),
    Verb("clean", "cleans", conjugate("putzen"), kinds("object", "building")),
    Verb("paint", "paints", conjugate("malen"), _PERSON_OBJECTS),
    Verb("draw", "draws", conjugate("zeichnen"), _PERSON_OBJECTS),
    Verb("visit", "visits", conjugate("besuchen"), kinds("person", "building")),
    Verb("meet", "meets", conjugate("treffen", du="triffst", er="trifft"), kinds("person")),
    Verb("know", "knows", conjugate("kennen"), kinds("person", "animal", "text", "building")),
    Verb("cook", "cooks", conjugate("kochen"), kinds("food")),
    Verb("read", "reads", conjugate("lesen", du="liest", er="liest"), kinds("text")),
    Verb("write", "writes", conjugate("schreiben"), kinds("text")),
    Verb("build", "builds", conjugate("bauen"), kinds("building")),
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

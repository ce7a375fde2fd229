"""French → English sentence pairs the machine makes offline: quantities, prices, dates,
times, ages and years written out in words in both languages (num2words), around an
everyday vocabulary (lexicon.py). French agreement is real: gender and number of articles,
adjectives (before or after the noun), "un/une", "prévu/prévue", "né/née".

    >>> rng = random.Random(0)
    >>> make_pair(rng)
    ("Elles ont vendu quarante-deux chaises vertes.", "They sold forty-two green chairs.")
    >>> train, valid, test = make_splits(n_train=12000, n_valid=300, n_test=500, seed=0)

Held-out pairs (valid, test) are new sentences: none of their French sides occurs in the
training set, and every word of them does (a new combination of known words)."""
from __future__ import annotations

import random
import re

from ..atomic_files import atomic_write_bytes
from . import lexicon as L


def _num2words():
    try:
        from num2words import num2words
    except ImportError:
        raise ImportError("the demo corpus writes numbers in words with num2words: pip install num2words") from None
    return num2words


def number_fr(n: int, feminine: bool = False) -> str:
    """French cardinal in words; "un" becomes "une" before a feminine noun (vingt et une)."""
    words = _num2words()(n, lang="fr")
    if feminine and (words == "un" or words.endswith((" un", "-un"))):
        words = words[:-2] + "une"
    return words


def number_en(n: int) -> str:
    return _num2words()(n, lang="en")


def year_fr(y: int) -> str:
    return _num2words()(y, lang="fr")


def year_en(y: int) -> str:
    return _num2words()(y, lang="en", to="year")  # nineteen ninety-nine, two thousand and five


def ordinal_en(n: int) -> str:
    return _num2words()(n, lang="en", to="ordinal")


def _vowel(word: str) -> bool:
    return word[:1].lower() in "aeiouéèêâîôœ"


def _article_fr(noun: str, gender: str, definite: bool = True) -> str:
    if definite:
        return "l'" + noun if _vowel(noun) else ("le " if gender == "m" else "la ") + noun
    return ("un " if gender == "m" else "une ") + noun


def _a_an(phrase: str) -> str:
    return ("an " if _vowel(phrase) else "a ") + phrase


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


class Limits:
    """Number ranges of the generator (the task's difficulty)."""

    def __init__(self, max_quantity: int = 99, max_euros: int = 999, years=(1950, 2030), max_age: int = 99):
        self.max_quantity, self.max_euros, self.years, self.max_age = max_quantity, max_euros, years, max_age


# ------------------------------------------------------------------------------ templates

# what can be bought and priced, and what fits in a box or a room
_THINGS = [n for n in L.NOUNS if n[0] not in L.PEOPLE and n[0] not in L.BUILDINGS]
_MOVABLE = [n for n in L.NOUNS if n[0] not in L.BUILDINGS]


def _noun_phrase(rng, n, limits, with_adjective, nouns):
    """(French, English) of "n nouns [adjective]" with agreement."""
    fr_sg, fr_pl, gender, en_sg, en_pl = rng.choice(nouns)
    fr_noun, en_noun = (fr_sg, en_sg) if n == 1 else (fr_pl, en_pl)
    if with_adjective:
        ms, fs, mp, fp, en_adj = rng.choice(L.ADJECTIVES)
        adj = {("m", 1): ms, ("f", 1): fs, ("m", 0): mp, ("f", 0): fp}[(gender, int(n == 1))]
        fr_noun = f"{adj} {fr_noun}" if ms in L.PRENOMINAL else f"{fr_noun} {adj}"
        en_noun = f"{en_adj} {en_noun}"
    if n == 1:
        return ("un " if gender == "m" else "une ") + fr_noun, _a_an(en_noun)
    return f"{number_fr(n, gender == 'f')} {fr_noun}", f"{number_en(n)} {en_noun}"


def _quantity(rng, limits):
    return 1 if rng.random() < 0.1 else rng.randint(2, limits.max_quantity)


def t_purchase(rng, limits):
    subj_fr, subj_en = rng.choice(L.SUBJECTS)
    verb_fr, verb_en = rng.choice(L.VERBS)
    nouns = L.NOUNS if verb_fr in L.VERBS_FOR_ALL else _THINGS
    fr_np, en_np = _noun_phrase(rng, _quantity(rng, limits), limits, rng.random() < 0.5, nouns)
    return f"{_cap(subj_fr)} {verb_fr} {fr_np}.", f"{_cap(subj_en)} {verb_en} {en_np}."


def t_there_are(rng, limits):
    place_fr, place_en = rng.choice(L.PLACES)
    n = _quantity(rng, limits)
    fr_np, en_np = _noun_phrase(rng, n, limits, rng.random() < 0.4, _MOVABLE)
    be = "is" if n == 1 else "are"
    return f"Il y a {fr_np} dans {place_fr}.", f"There {be} {en_np} in {place_en}."


def _amount(rng, limits):
    euros = rng.randint(1, limits.max_euros)
    fr = f"{number_fr(euros)} euro{'s' if euros > 1 else ''}"
    en = f"{number_en(euros)} euro{'s' if euros > 1 else ''}"
    if rng.random() < 0.6:
        cents = rng.randint(1, 99)
        fr += f" et {number_fr(cents)} centime{'s' if cents > 1 else ''}"
        en += f" and {number_en(cents)} cent{'s' if cents > 1 else ''}"
    return fr, en


def t_price(rng, limits):
    fr_sg, fr_pl, gender, en_sg, en_pl = rng.choice(_THINGS)
    fr_amount, en_amount = _amount(rng, limits)
    if rng.random() < 0.5:
        return f"{_cap(_article_fr(fr_sg, gender))} coûte {fr_amount}.", f"The {en_sg} costs {en_amount}."
    return f"Les {fr_pl} coûtent {fr_amount}.", f"The {en_pl} cost {en_amount}."


def t_date(rng, limits):
    event_fr, gender, event_en = rng.choice(L.EVENTS)
    month = rng.randrange(12)
    day = rng.randint(1, L.MONTH_DAYS[month])
    year = rng.randint(*limits.years)
    month_fr, month_en = L.MONTHS[month]
    day_fr = "premier" if day == 1 else number_fr(day)
    date_fr, date_en = f"{day_fr} {month_fr} {year_fr(year)}", f"{month_en} {ordinal_en(day)}, {year_en(year)}"
    if rng.random() < 0.4:
        wd_fr, wd_en = rng.choice(L.WEEKDAYS)
        date_fr, date_en = f"{wd_fr} {date_fr}", f"{wd_en}, {date_en}"
    planned = "prévu" if gender == "m" else "prévue"
    return (f"{_cap(_article_fr(event_fr, gender))} est {planned} le {date_fr}.",
            f"The {event_en} is planned for {date_en}.")


def t_time(rng, limits):
    vehicle_fr, vehicle_en = rng.choice(L.VEHICLES)
    verb_fr, verb_en = rng.choice(L.DEPARTURES)
    hour = rng.randint(1, 12)
    minute = rng.choice([0, 0, rng.randint(1, 59)])
    fr = f"{number_fr(hour, True)} heure{'s' if hour > 1 else ''}"
    if minute == 0:
        en = f"{number_en(hour)} o'clock"
    else:
        fr += f" {number_fr(minute, True)}"
        en = f"{number_en(hour)} {'oh ' if minute < 10 else ''}{number_en(minute)}"
    return f"{_cap(vehicle_fr)} {verb_fr} à {fr}.", f"{_cap(vehicle_en)} {verb_en} at {en}."


def t_age(rng, limits):
    name, _ = rng.choice(L.NAMES)
    age = rng.randint(1, limits.max_age)
    return (f"{name} a {number_fr(age)} an{'s' if age > 1 else ''}.",
            f"{name} is {number_en(age)} year{'s' if age > 1 else ''} old.")


def t_born(rng, limits):
    name, gender = rng.choice(L.NAMES)
    year = rng.randint(*limits.years)
    return (f"{name} est {'né' if gender == 'm' else 'née'} en {year_fr(year)}.",
            f"{name} was born in {year_en(year)}.")


TEMPLATES = [(t_purchase, 3), (t_there_are, 2), (t_price, 2), (t_date, 2), (t_time, 1), (t_age, 1), (t_born, 1)]


def make_pair(rng: random.Random, limits: Limits | None = None):
    """One (French, English) pair drawn from the templates (weighted)."""
    limits = limits or Limits()
    funcs, weights = zip(*TEMPLATES)
    return rng.choices(funcs, weights)[0](rng, limits)


_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]", re.UNICODE)


def words(sentence: str) -> set:
    return set(_WORD.findall(sentence.lower()))


def make_splits(n_train: int = 12000, n_valid: int = 300, n_test: int = 500, seed: int = 0,
                limits: Limits | None = None):
    """(train, valid, test) lists of distinct (French, English) pairs. Held-out pairs are
    French sentences absent from train whose words (both sides) all occur in train."""
    limits = limits or Limits()
    rng = random.Random(seed)
    train: list[tuple[str, str]] = []
    seen: set[str] = set()
    attempts = 0
    while len(train) < n_train:
        attempts += 1
        if attempts > 50 * n_train + 1000:
            raise RuntimeError(f"could not draw {n_train} distinct sentences (got {len(train)})")
        pair = make_pair(rng, limits)
        if pair[0] not in seen:
            seen.add(pair[0])
            train.append(pair)
    vocab_fr, vocab_en = set(), set()
    for fr, en in train:
        vocab_fr |= words(fr)
        vocab_en |= words(en)
    held: list[tuple[str, str]] = []
    attempts = 0
    while len(held) < n_valid + n_test:
        attempts += 1
        if attempts > 200 * (n_valid + n_test) + 1000:
            raise RuntimeError("could not draw enough held-out sentences made of training words")
        fr, en = make_pair(rng, limits)
        if fr in seen or not words(fr) <= vocab_fr or not words(en) <= vocab_en:
            continue
        seen.add(fr)
        held.append((fr, en))
    return train, held[:n_valid], held[n_valid:]


def write_pairs(pairs, src_path, tgt_path) -> None:
    atomic_write_bytes(src_path, "".join(fr + "\n" for fr, _ in pairs).encode("utf-8"))
    atomic_write_bytes(tgt_path, "".join(en + "\n" for _, en in pairs).encode("utf-8"))

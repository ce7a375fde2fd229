"""python/tformer/demo: the offline French → English corpus (templates, agreement, held-out
splits) and its vocabulary checked against the FreeDict dictionary where it is installed."""
import os
import random
import re

import pytest

pytest.importorskip("num2words")

from tformer.demo import corpus as C  # noqa: E402
from tformer.demo import lexicon as L  # noqa: E402


def test_numbers_in_words():
    assert C.number_fr(21) == "vingt et un" and C.number_fr(21, feminine=True) == "vingt et une"
    assert C.number_fr(1, feminine=True) == "une" and C.number_fr(81, feminine=True) == "quatre-vingt-une"
    assert C.number_fr(11, feminine=True) == "onze"
    assert C.number_fr(97) == "quatre-vingt-dix-sept" and C.number_en(97) == "ninety-seven"
    assert C.year_fr(1999) == "mille neuf cent quatre-vingt-dix-neuf" and C.year_en(1999) == "nineteen ninety-nine"
    assert C.ordinal_en(23) == "twenty-third"


def test_every_template_agrees():
    rng = random.Random(5)
    for func, _ in C.TEMPLATES:
        for _ in range(200):
            fr, en = func(rng, C.Limits())
            assert fr[0].isupper() and en[0].isupper() and fr.endswith(".") and en.endswith("."), (fr, en)
            assert "  " not in fr and "  " not in en
            # feminine nouns never take "un", masculine ones never "une"
            for fem in (n for n in L.NOUNS if n[2] == "f"):
                assert not re.search(rf"\b(un|et un|-un) {fem[0]}\b", fr), fr
            for masc in (n for n in L.NOUNS if n[2] == "m"):
                assert not re.search(rf"\b(une|et une|-une) {masc[0]}\b", fr), fr
    assert C.t_age(random.Random(0), C.Limits(max_age=1))[1].endswith("is one year old.")


def test_some_known_pairs():
    rng = random.Random(0)
    pairs = [C.make_pair(rng) for _ in range(3000)]
    fr_to_en = dict(pairs)
    assert any("centimes" in fr and "cents" in fr_to_en[fr] for fr in fr_to_en)
    assert any(" est prévue le " in fr for fr in fr_to_en)
    # adjectives: prenominal ones before the noun in French, all before it in English
    assert any(re.search(r"\b(petites|grandes|belles|jolies|vieilles|nouvelles) \w+s\b", fr) for fr in fr_to_en)
    assert any(re.search(r"\w+s (rouges|vertes|noires|bleues) *\.", fr) for fr in fr_to_en)


def test_splits_are_new_combinations_of_known_words():
    train, valid, test = C.make_splits(n_train=3000, n_valid=100, n_test=200, seed=1)
    assert (len(train), len(valid), len(test)) == (3000, 100, 200)
    train_fr = {fr for fr, _ in train}
    assert len(train_fr) == 3000
    held = valid + test
    assert len({fr for fr, _ in held}) == len(held)
    assert not train_fr & {fr for fr, _ in held}
    vocab_fr = set().union(*(C.words(fr) for fr, _ in train))
    vocab_en = set().union(*(C.words(en) for _, en in train))
    for fr, en in held:
        assert C.words(fr) <= vocab_fr and C.words(en) <= vocab_en
    assert C.make_splits(n_train=3000, n_valid=100, n_test=200, seed=1) == (train, valid, test)
    assert C.make_splits(n_train=3000, n_valid=100, n_test=200, seed=2)[0] != train


def test_write_pairs(tmp_path):
    pairs = [("J'ai vu deux chats.", "I saw two cats."), ("Léa a six ans.", "Léa is six years old.")]
    C.write_pairs(pairs, tmp_path / "t.fr", tmp_path / "t.en")
    from tformer.data import read_parallel

    assert read_parallel(tmp_path / "t.fr", tmp_path / "t.en") == pairs


def test_lexicon_is_consistent():
    assert len({n[0] for n in L.NOUNS}) == len(L.NOUNS)
    assert all(g in ("m", "f") for _, _, g, _, _ in L.NOUNS)
    assert L.PEOPLE | L.BUILDINGS <= {n[0] for n in L.NOUNS}
    assert L.PRENOMINAL <= {a[0] for a in L.ADJECTIVES}
    assert L.VERBS_FOR_ALL <= {v[0] for v in L.VERBS}


@pytest.mark.skipif(not os.path.exists(L.FREEDICT + ".index"),
                    reason="FreeDict French-English not installed (apt-get install dict-freedict-fra-eng)")
def test_glosses_come_from_freedict():
    entries = L.read_freedict()
    words = [(n[0], n[3]) for n in L.NOUNS] + [(a[0], a[4]) for a in L.ADJECTIVES] + [(e[0], e[2]) for e in L.EVENTS]
    for fr, en in words:
        text = " ".join(entries.get(fr, []))
        assert re.search(rf"\b{re.escape(en)}\b", text), f"{fr} -> {en}: FreeDict says {text!r}"


def test_freedict_missing_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dict-freedict-fra-eng"):
        L.read_freedict(str(tmp_path / "nothing"))

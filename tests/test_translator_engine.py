"""Translator on tformer.Engine: submit / translate_async / stream against transformers'
tokenizer + generate + decode (tiny briefly-trained checkpoints built offline, as in
test_translator.py), and the engine's lifecycle on a Translator."""

import asyncio
import concurrent.futures

import pytest
import tformer

import test_translator as tt

TEXTS = tt.TEXTS


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory):
    return tt.build_marian_dir(tmp_path_factory, "tiny_marian")


@pytest.fixture(scope="module")
def translator(marian_dir):
    with tformer.Translator(str(marian_dir)) as translator:
        translator.start_engine(max_rows=32)
        yield translator


@pytest.mark.parametrize("beam_size", [1, 3])
def test_submit_and_translate_async_match_transformers(marian_dir, translator, beam_size):
    expected = tt.hf_translate(marian_dir, TEXTS, num_beams=beam_size, max_new_tokens=12)
    results = translator.submit(TEXTS, beam_size=beam_size, max_length=12, return_scores=True).result(timeout=60)
    assert [r.texts[0] for r in results] == expected
    batch = translator.translate_batch(TEXTS, beam_size=beam_size, max_length=12, return_scores=True)
    assert [(r.tokens, r.scores) for r in results] == [(r.tokens, r.scores) for r in batch]
    assert asyncio.run(translator.translate_async(TEXTS, beam_size=beam_size, max_length=12)) == expected


def test_translate_async_n_best(marian_dir, translator):
    expected = tt.hf_translate(marian_dir, TEXTS, n_best=2, num_beams=3, max_new_tokens=10)
    assert asyncio.run(translator.translate_async(TEXTS, beam_size=3, num_hypotheses=2, max_length=10)) == expected


@pytest.mark.parametrize("beam_size", [1, 4])
def test_stream_grows_to_the_translation(marian_dir, translator, beam_size):
    for text in TEXTS[:3]:
        expected = tt.hf_translate(marian_dir, [text], num_beams=beam_size, max_new_tokens=16)[0]
        parts = list(translator.stream(text, beam_size=beam_size, max_length=16))
        assert parts[-1] == expected
        assert len(parts) == len(set(parts))  # a new item only when the text changed
        if beam_size == 1 and len(expected.split()) > 2:
            assert len(parts) > 1


def test_multilingual_target_languages_share_the_engine(tmp_path):
    tok = tt.build_m2m100_tokenizer(tmp_path / "tok")
    directory = tt.build_m2m100_model(tmp_path / "m2m", tok, seed=5, langs=("fr", "en"))
    with tformer.Translator(str(directory), source_lang="fr") as translator:
        futures = {target: translator.submit(TEXTS, target_lang=target, beam_size=2, max_length=10)
                   for target in ("de", "en")}
        for target, future in futures.items():
            expected = translator.translate_batch(TEXTS, target_lang=target, beam_size=2, max_length=10)
            got = future.result(timeout=60)
            assert [(r.tokens, r.texts) for r in got] == [(r.tokens, r.texts) for r in expected]
            streamed = list(translator.stream(TEXTS[0], target_lang=target, beam_size=1, max_length=10))
            assert streamed[-1] == translator.translate(TEXTS[:1], target_lang=target, beam_size=1,
                                                        max_length=10)[0]


def test_future_cancel_and_deadline(translator):
    long = dict(beam_size=1, max_length=60, min_length=60)
    future = translator.submit(TEXTS, deadline=0, **long)
    with pytest.raises(tformer.DeadlineExceeded):
        future.result(timeout=60)
    future = translator.submit(TEXTS, **long)
    future.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=60)
    assert translator.submit(TEXTS[:1], beam_size=1, max_length=8).result(timeout=60)[0].texts


def test_engine_lifecycle(marian_dir):
    translator = tformer.Translator(str(marian_dir))
    engine = translator.engine  # started lazily, once
    assert translator.engine is engine
    with pytest.raises(RuntimeError, match="engine is already started"):
        translator.start_engine(max_rows=4)
    translator.close()
    engine_again = translator.start_engine(max_rows=4)
    assert engine_again is not engine and engine_again.stats()["max_rows"] == 4
    with pytest.raises(RuntimeError, match="engine is closed"):
        engine.submit([[5, 0]])
    translator.close()
    translator.close()  # twice is fine
    assert translator.translate(TEXTS[:1], max_length=6)  # generate does not need the engine


def test_bad_input_raises_at_the_call(translator):
    with pytest.raises(ValueError) as expected:
        translator.translate(TEXTS, beam_size=0)
    with pytest.raises(ValueError) as got:
        translator.submit(TEXTS, beam_size=0)
    assert str(got.value) == str(expected.value)
    with pytest.raises(TypeError, match="texts must be a list of strings"):
        translator.submit("Le chat.")
    with pytest.raises(TypeError, match="text must be a string, got list"):
        translator.stream(["Le chat."])
    with pytest.raises(ValueError, match="deadline must be None"):
        translator.submit(TEXTS, deadline=-1)

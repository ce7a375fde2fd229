"""tformer.Translator on T5 directories against transformers: a sentencepiece model trained
here (T5's layout: pad 0, </s> 1, <unk> 2, sentinels after the pieces), saved both as
spiece.model alone (older hub directories) and through transformers' T5Tokenizer as
tokenizer.json; a tiny random T5 whose config.json has task_specific_params; task prefixes
from a task, from the languages, or given."""
import json
import shutil

import pytest
import tformer
from tformer.tokenizers import FastTokenizer, T5SentencePieceTokenizer, load_tokenizer

import t5_testlib as t5
import tf_testlib as lib
from test_translator import EN, FR, TRICKY, _train_spm, hf_tokenizer, hf_translate

EXTRA_IDS = 3
TASKS = {"translation_en_to_fr": {"prefix": "translate English to French: ", "max_length": 300},
         "translation_en_to_de": {"prefix": "translate English to German: "},
         "summarization": {"prefix": "summarize: ", "num_beams": 4}}
TEXTS = ["The cat sleeps on the sofa.", "Where is the station, please?", "My sister loves fresh vegetables.",
         "It has been raining since this morning."]


@pytest.fixture(scope="module")
def t5_dirs(tmp_path_factory):
    """{"spiece": directory with spiece.model only, "fast": with transformers' tokenizer.json}."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    work = tmp_path_factory.mktemp("t5_tok")
    model_file = _train_spm(EN + FR, str(work / "sp"), 120, unk_id=2, eos_id=1, bos_id=-1, pad_id=0)
    sp = spm.SentencePieceProcessor(model_file=model_file)
    vocab = sp.get_piece_size() + EXTRA_IDS + 5  # rows past the tokenizer, as t5-small has
    model = t5.build("t5_v10", seed=5, vocab_size=vocab, task_specific_params=TASKS)
    dirs = {}
    for kind in ("spiece", "fast"):
        directory = work / kind
        with lib.quiet():
            model.save_pretrained(str(directory))
        if kind == "spiece":
            shutil.copy(model_file, directory / "spiece.model")
            (directory / "tokenizer_config.json").write_text(
                json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": EXTRA_IDS}))
        else:
            pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
            with lib.quiet():
                T5Tokenizer(vocab=pieces, extra_ids=EXTRA_IDS).save_pretrained(str(directory))
        dirs[kind] = directory
    return dirs


def test_t5_tokenizers_are_chosen_and_agree_with_transformers(t5_dirs):
    spiece, fast = load_tokenizer(t5_dirs["spiece"]), load_tokenizer(t5_dirs["fast"])
    assert isinstance(spiece, T5SentencePieceTokenizer) and isinstance(fast, FastTokenizer)
    ref = hf_tokenizer(t5_dirs["fast"])
    texts = ([TASKS["translation_en_to_fr"]["prefix"] + t for t in TEXTS] + FR[:6] + TRICKY
             + ["hello <extra_id_1> world</s>", "a<pad>b", "<pad>", " x  y "])
    expected = [ref(t)["input_ids"] for t in texts]
    assert all(ids[-1] == 1 for ids in expected)
    assert spiece.encode(texts) == expected
    assert fast.encode(texts) == expected
    # The sentinels count down from the end as in t5-small (<extra_id_0> = 32099): transformers'
    # T5Tokenizer(vocab=...) above numbers them upwards, so only the middle one is compared there.
    size = spiece.sp.get_piece_size()
    assert spiece.encode(["<extra_id_0>x<extra_id_2>"]) == [[size + EXTRA_IDS - 1] + spiece.encode(["x"])[0][:-1]
                                                            + [size, 1]]
    with_specials = [ids[:2] + [0, 2, spiece.sp.get_piece_size()] + ids[2:] for ids in expected]
    decoded = [ref.decode(ids, skip_special_tokens=True) for ids in with_specials]
    assert spiece.decode(with_specials) == decoded
    assert fast.decode(with_specials) == decoded


@pytest.mark.parametrize("kind", ["spiece", "fast"])
@pytest.mark.parametrize("how", ["languages", "task", "prefix", "per_call_task"])
def test_t5_translate_with_task_prefix_matches_transformers(t5_dirs, kind, how):
    prefix = TASKS["translation_en_to_de"]["prefix"]
    expected = hf_translate(t5_dirs["fast"], [prefix + t for t in TEXTS], num_beams=3, max_new_tokens=8)
    settings = {"languages": dict(source_lang="en", target_lang="de"), "task": dict(task="translation_en_to_de"),
                "prefix": dict(prefix=prefix), "per_call_task": {}}[how]
    translator = tformer.Translator(str(t5_dirs[kind]), **settings)
    per_call = dict(task="translation_en_to_de") if how == "per_call_task" else {}
    assert translator.translate(TEXTS, beam_size=3, max_length=8, **per_call) == expected
    assert translator.encode(TEXTS, **per_call)[0] == hf_tokenizer(t5_dirs["fast"])(prefix + TEXTS[0])["input_ids"]


def test_t5_without_prefix_translates_the_text_as_given(t5_dirs):
    expected = hf_translate(t5_dirs["fast"], TEXTS, num_beams=1, max_new_tokens=6)
    assert tformer.Translator(str(t5_dirs["fast"])).translate(TEXTS, beam_size=1, max_length=6) == expected
    assert len({e for e in expected if e}) >= 2, expected  # the model says different things


def test_t5_per_call_languages_override_the_default_task(t5_dirs):
    translator = tformer.Translator(str(t5_dirs["fast"]), task="summarization")
    assert translator.encode(["x"], source_lang="en", target_lang="fr") == \
        translator.encode(["x"], task="translation_en_to_fr")
    assert translator.encode(["x"]) == translator.encode(["summarize: x"], prefix="")


def test_t5_task_prefix_errors(t5_dirs):
    path = str(t5_dirs["fast"])
    with pytest.raises(ValueError, match=r"task 'translation_en_to_ro' is not one of this model's tasks: "
                                         r"summarization, translation_en_to_de, translation_en_to_fr"):
        tformer.Translator(path, source_lang="en", target_lang="ro")
    with pytest.raises(ValueError, match=r"task 'translate' is not one of this model's tasks"):
        tformer.Translator(path).translate(["x"], task="translate")
    with pytest.raises(ValueError, match=r"pass prefix or task, not both"):
        tformer.Translator(path, prefix="p: ", task="summarization")
    with pytest.raises(ValueError, match=r"give both source_lang and target_lang"):
        tformer.Translator(path).translate(["x"], target_lang="fr")
    with pytest.raises(TypeError, match=r"prefix must be a string, got int"):
        tformer.Translator(path, prefix=3)
    with pytest.raises(TypeError, match=r"task must be a string, got list"):
        tformer.Translator(path).encode(["x"], task=["summarization"])


def test_t5_spiece_tokenizer_errors(t5_dirs, tmp_path):
    directory = shutil.copytree(t5_dirs["spiece"], tmp_path / "d")
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer",
                                                                 "extra_ids": -1}))
    with pytest.raises(ValueError, match=r"extra_ids must be an integer >= 0, got -1"):
        load_tokenizer(directory)
    with pytest.raises(ValueError, match=r"target_lang='fr': this t5 tokenizer has no target-language tokens"):
        T5SentencePieceTokenizer(str(t5_dirs["spiece"])).encode(["x"], target_lang="fr")


def test_server_takes_t5_task_prefix_and_languages(t5_dirs):
    """tformer serve's /translate passes prefix / task / languages to the T5 Translator: each
    request's translations equal Translator.translate_batch with the same options, and a bad
    task or prefix is a 4xx naming it."""
    from fastapi.testclient import TestClient
    from tformer.serve.app import ServeLimits, create_app

    translator = tformer.Translator(str(t5_dirs["fast"]))
    opts = dict(beam_size=1, max_length=12)
    with TestClient(create_app(translator, ServeLimits(batch_wait_ms=0, max_chars=200))) as client:
        for extra in ({"task": "translation_en_to_de"}, {"prefix": "summarize: "},
                      {"source_lang": "en", "target_lang": "fr"}):
            r = client.post("/translate", json={"texts": TEXTS[:2], **opts, **extra})
            assert r.status_code == 200, r.text
            expected = [res.texts[0] for res in translator.translate_batch(TEXTS[:2], **opts, **extra)]
            assert r.json()["translations"] == expected, extra
        # The prefix really reaches the model: the tokens it reads differ with the task.
        assert translator.encode(TEXTS[:1], task="translation_en_to_de") != translator.encode(TEXTS[:1])
        r = client.post("/translate", json={"texts": TEXTS[:1], "task": "translation_en_to_xx"})
        assert r.status_code == 400 and "translation_en_to_xx" in r.json()["detail"]
        assert "translation_en_to_fr" in r.json()["detail"]  # the model's tasks are listed
        r = client.post("/translate", json={"texts": TEXTS[:1], "task": "summarization", "prefix": "x: "})
        assert r.status_code == 400 and "not both" in r.json()["detail"]
        r = client.post("/translate", json={"texts": TEXTS[:1], "prefix": "p" * 201})
        assert r.status_code == 422 and "prefix" in r.json()["detail"]


def test_serve_command_names_a_bad_task(t5_dirs):
    from tformer.cli import main

    with pytest.raises(SystemExit, match="translation_en_to_xx"):
        main(["serve", str(t5_dirs["fast"]), "--task", "translation_en_to_xx"])

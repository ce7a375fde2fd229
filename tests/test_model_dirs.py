"""Directories tformer writes (Transformer.save + tokenizer files, `tformer train --out`)
are models for Translator, Engine, `tformer translate` and `tformer serve`, as Hugging Face
directories are (python/tformer/model_dirs.py): a Marian checkpoint converted and saved by
tformer translates as transformers does on the original, an int8 export stays int8, and a
`tformer train` run directory is translated by the command line."""
import os
import shutil

import pytest
import tformer
from tformer.model_dirs import is_tformer_model_dir, load_model_dir

import test_translator as tt
from test_train_cli import data, train_argv  # noqa: F401 (data is a fixture)
from test_translate_cli import read_lines, write_lines

SENTENCES = ["Le chat dort sur le canapé.", "Où est la gare ?", "Mon voisin achète une pomme rouge.", "Il pleut."]
OPTIONS = dict(beam_size=2, max_length=8)
TOKENIZER_FILES = ("source.spm", "target.spm", "vocab.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory):
    return tt.build_marian_dir(tmp_path_factory, "dirs", seed=5)


@pytest.fixture(scope="module")
def expected(marian_dir):
    return tt.hf_translate(marian_dir, SENTENCES, num_beams=2, max_new_tokens=8)


def save_with_tokenizer(model, directory, tokenizer_dir):
    model.save(directory)
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(tokenizer_dir, name), directory)
    return str(directory)


@pytest.fixture(scope="module")
def saved_dir(marian_dir, tmp_path_factory):
    """The Marian checkpoint converted by tformer and saved in tformer's own format."""
    return save_with_tokenizer(tformer.from_huggingface(marian_dir), tmp_path_factory.mktemp("saved") / "m",
                               marian_dir)


def test_saved_directory_is_recognised(marian_dir, saved_dir, tmp_path):
    assert is_tformer_model_dir(saved_dir)
    assert not is_tformer_model_dir(marian_dir)
    assert not is_tformer_model_dir(tmp_path)  # no config.json


def test_translator_on_a_saved_directory_equals_transformers(saved_dir, expected):
    translator = tformer.Translator(saved_dir)
    assert translator.model.dtype == "float32"
    assert translator.translate(SENTENCES, **OPTIONS) == expected


def test_translate_command_on_a_saved_directory_equals_transformers(saved_dir, expected, tmp_path):
    from tformer.translate_cli import main

    src = write_lines(tmp_path / "in.txt", SENTENCES[:2] + [""] + SENTENCES[2:])
    out = tmp_path / "out.txt"
    assert main([saved_dir, "-i", src, "-o", str(out), "--beam-size", "2", "--max-length", "8", "--quiet"]) == 0
    assert read_lines(out) == expected[:2] + [""] + expected[2:]


def test_serve_on_a_saved_directory_equals_transformers(saved_dir, expected, monkeypatch):
    """`tformer serve DIR`, up to uvicorn.run, whose app then answers."""
    pytest.importorskip("uvicorn")
    import uvicorn
    from fastapi.testclient import TestClient

    from tformer import cli

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    assert cli.main(["serve", saved_dir, "--beam-size", "2", "--max-length", "8"]) in (0, None)
    with TestClient(apps[0], base_url="http://127.0.0.1") as c:
        r = c.post("/translate", json={"texts": SENTENCES})
    assert r.status_code == 200, r.text
    assert r.json()["translations"] == expected


def test_engine_on_a_saved_directory(saved_dir, marian_dir):
    ids = tformer.Translator(marian_dir).tokenizer.encode(SENTENCES[:1])[0]
    reference = tformer.from_huggingface(marian_dir).generate([ids], **OPTIONS)[0]
    with tformer.Engine(saved_dir) as engine:
        result = engine.submit([ids], **OPTIONS).result(timeout=60)[0]
    assert result.tokens == reference.tokens and result.scores == reference.scores


def test_an_int8_export_stays_int8(marian_dir, tmp_path):
    """dtype None keeps the saved dtype: the same bits as quantizing the Hugging Face directory
    while loading it."""
    int8_dir = save_with_tokenizer(tformer.from_huggingface(marian_dir).to(dtype="int8"), tmp_path / "int8",
                                   marian_dir)
    assert load_model_dir(int8_dir).dtype == "int8"
    ours = tformer.Translator(int8_dir)
    assert ours.model.dtype == "int8"
    reference = tformer.Translator(marian_dir, dtype="int8")
    assert ours.translate(SENTENCES, **OPTIONS) == reference.translate(SENTENCES, **OPTIONS)


def test_a_saved_directory_without_tokenizer_files_is_named(marian_dir, tmp_path):
    tformer.from_huggingface(marian_dir).save(tmp_path / "bare")
    with pytest.raises(FileNotFoundError, match="no tokenizer found"):
        tformer.Translator(str(tmp_path / "bare"))
    # the model alone still loads, and Translator takes a tokenizer from elsewhere
    translator = tformer.Translator(str(tmp_path / "bare"), tokenizer=marian_dir)
    assert translator.translate(SENTENCES[:1], **OPTIONS)[0]


def test_revision_is_refused_for_a_saved_directory(saved_dir):
    with pytest.raises(ValueError, match="revision='v2' is for Hugging Face Hub ids"):
        tformer.Translator(saved_dir, revision="v2")


def test_a_tformer_train_run_directory_is_translated(data, tmp_path, capsys):  # noqa: F811 (data is a fixture)
    """The user's path: `tformer train --out run`, then `tformer translate run`."""
    from tformer.cli import main

    run = tmp_path / "run"
    assert main(train_argv(data, run, "--max-steps", "4", "--eval-every", "4")) == 0
    capsys.readouterr()
    lines = ["le chat dort", "", "il y a deux chiens"]
    src = write_lines(tmp_path / "in.fr", lines)
    out = tmp_path / "out.en"
    assert main(["translate", str(run), "-i", src, "-o", str(out), "--max-length", "6", "--quiet"]) == 0
    # the same as the model and tokenizer loaded one by one
    model = tformer.Transformer.load(run)
    reference = tformer.Translator(model, tokenizer=str(run)).translate([lines[0], lines[2]], max_length=6)
    assert read_lines(out) == [reference[0], "", reference[1]]

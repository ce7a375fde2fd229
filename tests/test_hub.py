"""Hugging Face Hub model ids (tformer.hub), offline: a tiny random MarianMT checkpoint with
its tokenizer (test_translator) is laid into a temporary Hugging Face cache exactly as
huggingface_hub lays out a download (models--org--name/blobs/<hash>, snapshots/<commit>/<file>
linked to the blob, refs/<branch> holding the commit), and read back through huggingface_hub's
own snapshot_download with HF_HUB_OFFLINE=1. The references are transformers' generate on the
same directories."""

import hashlib
import os
import subprocess
import sys

import pytest
import tformer
from tformer import hub

import test_translator as tt

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import constants as hub_constants  # noqa: E402

REPO = "tiny-org/tiny-marian"
COMMIT_MAIN = "a" * 40
COMMIT_V2 = "b" * 40
TEXTS = tt.TEXTS[:3]
OPTS = dict(beam_size=2, max_length=8)


def _lay_snapshot(cache, repo_id, commit, source_dir, refs=()):
    """Copies source_dir's files into the cache as huggingface_hub stores a download: each
    file's bytes once under blobs/, the snapshot's file a relative symlink to it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name in sorted(os.listdir(source_dir)):
        data = (source_dir / name).read_bytes()
        blob = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / blob).write_bytes(data)
        os.symlink(os.path.join("..", "..", "blobs", blob), snapshot / name)
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
    return snapshot


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return tt.build_marian_tokenizer(tmp_path_factory.mktemp("hub_tok") / "marian")


@pytest.fixture(scope="module")
def model_dirs(tok_dir, tmp_path_factory):
    """Two checkpoints of different weights: the repository's main and its v2 branch."""
    return {"main": tt.build_marian_model(tmp_path_factory.mktemp("hub_main"), tok_dir, seed=0),
            "v2": tt.build_marian_model(tmp_path_factory.mktemp("hub_v2"), tok_dir, seed=5)}


@pytest.fixture(scope="module")
def references(model_dirs):
    refs = {rev: tt.hf_translate(d, TEXTS, num_beams=OPTS["beam_size"], max_new_tokens=OPTS["max_length"])
            for rev, d in model_dirs.items()}
    assert refs["main"] != refs["v2"]  # so that a wrong revision shows
    return refs


@pytest.fixture(scope="module")
def cache(model_dirs, tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf_cache")
    _lay_snapshot(cache, REPO, COMMIT_MAIN, model_dirs["main"], refs=["main"])
    _lay_snapshot(cache, REPO, COMMIT_V2, model_dirs["v2"], refs=["v2"])
    return cache


@pytest.fixture
def offline(monkeypatch, cache):
    """HF_HUB_CACHE / HF_HUB_OFFLINE as the environment would set them; huggingface_hub read
    them at import, so its constants are set too."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache


def test_snapshot_download_reads_the_laid_out_cache(offline):
    """The fake cache is a real one: huggingface_hub itself resolves it."""
    folder = huggingface_hub.snapshot_download(REPO)
    assert folder.endswith(os.path.join("snapshots", COMMIT_MAIN))
    assert huggingface_hub.snapshot_download(REPO, revision="v2").endswith(COMMIT_V2)


def test_from_huggingface_hub_id_equals_the_directory(offline, model_dirs):
    ids = [[5, 9, 13, 0], [7, 0]]
    from_hub = tformer.from_huggingface(REPO)
    local = tformer.from_huggingface(str(model_dirs["main"]))
    assert [r.tokens for r in from_hub.generate(ids, beam_size=2, max_length=6)] == \
        [r.tokens for r in local.generate(ids, beam_size=2, max_length=6)]
    v2 = tformer.from_huggingface(REPO, revision="v2")
    assert (v2.parameters()["decoder.layers.0.ffn.fc1.weight"] ==
            tformer.from_huggingface(str(model_dirs["v2"])).parameters()["decoder.layers.0.ffn.fc1.weight"]).all()
    assert not (v2.parameters()["decoder.layers.0.ffn.fc1.weight"] ==
                from_hub.parameters()["decoder.layers.0.ffn.fc1.weight"]).all()


@pytest.mark.parametrize("revision,expected", [(None, "main"), ("main", "main"), ("v2", "v2"),
                                               (COMMIT_V2, "v2"), (COMMIT_MAIN, "main")])
def test_translator_hub_id_matches_transformers(offline, references, revision, expected):
    translator = tformer.Translator(REPO, revision=revision, **OPTS)
    assert translator.translate(TEXTS) == references[expected]


def test_engine_accepts_a_hub_id(offline, model_dirs):
    ids = [[5, 9, 13, 0], [7, 0]]
    expected = tformer.from_huggingface(str(model_dirs["main"])).generate(ids, beam_size=2, max_length=6)
    with tformer.Engine(REPO) as engine:  # loads through from_huggingface
        got = engine.submit(ids, beam_size=2, max_length=6).result(timeout=60)
    assert [r.tokens for r in got] == [r.tokens for r in expected]


def test_serve_loads_a_hub_id_at_a_revision(offline, references, monkeypatch):
    """`tformer serve ORG/NAME --revision v2`, up to uvicorn.run, whose app then answers."""
    pytest.importorskip("uvicorn")
    import uvicorn
    from fastapi.testclient import TestClient

    from tformer import cli

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    assert cli.main(["serve", REPO, "--revision", "v2", "--beam-size", "2", "--max-length", "8"]) in (0, None)
    with TestClient(apps[0], base_url="http://127.0.0.1") as c:  # the default --allowed-hosts
        r = c.post("/translate", json={"texts": TEXTS})
    assert r.status_code == 200, r.text
    assert r.json()["translations"] == references["v2"]


def test_serve_names_a_missing_model(offline, monkeypatch):
    pytest.importorskip("uvicorn")
    from tformer import cli

    with pytest.raises(SystemExit, match=r"tformer serve: tiny-org/absent is not a local directory.*HF_HUB_OFFLINE"):
        cli.main(["serve", "tiny-org/absent"])


def test_offline_with_nothing_cached(offline, tmp_path, monkeypatch):
    empty = tmp_path / "empty_cache"
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(empty))
    with pytest.raises(hub.HubOfflineError, match=r"tiny-org/tiny-marian is not a local directory, and as a Hugging "
                                                   r"Face Hub model \(revision 'main'\): HF_HUB_OFFLINE is set, and "
                                                   r"the cache at .*empty_cache does not hold it"):
        tformer.from_huggingface(REPO)
    with pytest.raises(FileNotFoundError, match=r"revision 'nope'"):  # offline cannot tell a bad revision apart
        tformer.Translator(REPO, revision="nope")


def test_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(hub.HubNotInstalledError, match=r"Helsinki-NLP/opus-mt-fr-en is neither a local directory.*"
                                                        r"install tformer\[hub\] \(pip install huggingface_hub\)"):
        tformer.from_huggingface("Helsinki-NLP/opus-mt-fr-en")


def test_local_directory_never_imports_huggingface_hub(monkeypatch, model_dirs, references):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # any import of it would fail
    assert hub.resolve_model_dir(model_dirs["main"]) == str(model_dirs["main"])
    assert tformer.Translator(str(model_dirs["main"]), **OPTS).translate(TEXTS) == references["main"]
    with pytest.raises(ValueError, match="revision='v2' is for Hugging Face Hub ids"):
        tformer.from_huggingface(str(model_dirs["main"]), revision="v2")


@pytest.mark.parametrize("name", ["./missing/dir/x", "missing/dir/x", "/no/such/model", "../up", "~/model",
                                  "org/na--me", "-lead/name"])
def test_not_a_directory_nor_an_id(monkeypatch, name):
    def no_call(*a, **kw):
        raise AssertionError("snapshot_download must not be called")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_call)
    assert not hub.looks_like_repo_id(name)
    with pytest.raises(hub.ModelNotFoundError, match=r"model directory not found: .*no such directory"):
        tformer.from_huggingface(name)


@pytest.mark.parametrize("name", ["Helsinki-NLP/opus-mt-fr-en", "t5-small", "facebook/m2m100_418M", "a/b.c_d"])
def test_hub_ids(name):
    assert hub.looks_like_repo_id(name)


# A Hub repository's files (Helsinki-NLP/opus-mt-fr-en's, plus what other repos carry).
REPO_FILES = [
    ".gitattributes", "README.md", "config.json", "generation_config.json", "metadata.json",
    "model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "rust_model.ot",
    "source.spm", "target.spm", "vocab.json", "tokenizer_config.json", "special_tokens_map.json",
    "onnx/encoder_model.onnx", "onnx/decoder_model.onnx", "onnx/config.json", "onnx/model.safetensors",
    "openvino/openvino_model.bin", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors", "pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json",
    "sentencepiece.bpe.model", "spiece.model", "tokenizer.json", "added_tokens.json", "target_vocab.json",
    "training_args.bin", "optimizer.pt", "runs/events.out", "checkpoint-500/model.safetensors",
]
COMMON = {"config.json", "generation_config.json", "source.spm", "target.spm", "vocab.json", "tokenizer_config.json",
          "special_tokens_map.json", "sentencepiece.bpe.model", "spiece.model", "tokenizer.json", "added_tokens.json",
          "target_vocab.json"}


def test_allow_patterns_fetch_only_what_tformer_reads():
    from huggingface_hub.utils import filter_repo_objects

    fetched = set(filter_repo_objects(REPO_FILES, allow_patterns=hub.allow_patterns("safetensors")))
    assert fetched == COMMON | {"model.safetensors", "model.safetensors.index.json",
                                "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    fetched = set(filter_repo_objects(REPO_FILES, allow_patterns=hub.allow_patterns("pytorch")))
    assert fetched == COMMON | {"pytorch_model.bin", "pytorch_model.bin.index.json",
                                "pytorch_model-00001-of-00002.bin"}
    with pytest.raises(ValueError, match="weights must be 'safetensors' or 'pytorch'"):
        hub.allow_patterns("tf")


def test_pytorch_bin_only_repository(offline, model_dirs, references, tok_dir, tmp_path, monkeypatch):
    """A repository without safetensors: the second fetch asks for pytorch_model.bin."""
    import tf_testlib as lib

    bin_dir = tmp_path / "bin_repo"
    ref = tt.hf_model(model_dirs["v2"]).float()
    lib.save_hf_model(ref, bin_dir, weights="bin")
    for name in os.listdir(tok_dir):
        (bin_dir / name).write_bytes((tok_dir / name).read_bytes())
    assert not any(n.endswith(".safetensors") for n in os.listdir(bin_dir))
    _lay_snapshot(offline, "tiny-org/bin-only", "c" * 40, bin_dir, refs=["main"])
    calls = []
    real = huggingface_hub.snapshot_download
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, **kw: calls.append(kw["allow_patterns"]) or real(repo_id, **kw))
    translator = tformer.Translator("tiny-org/bin-only", **OPTS)
    assert calls == [hub.allow_patterns("safetensors"), hub.allow_patterns("pytorch")]
    assert translator.translate(TEXTS) == references["v2"]


def _raise(error):
    def fake(*args, **kwargs):
        raise error
    return fake


def test_hub_answers_become_clear_errors(monkeypatch):
    """What the Hub answers online (not reachable here), mapped to errors naming the id and
    revision: huggingface_hub's own exception types, raised by a stand-in snapshot_download."""
    import httpx
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    response = httpx.Response(404, request=httpx.Request("GET", "https://huggingface.co/api/models/x"))
    cases = [(RepositoryNotFoundError("404", response=response), r"org/x is not a local directory, and as a Hugging Face Hub model \(revision 'main'\): no such repository"),
             (GatedRepoError("403", response=response), r"org/x .*\(revision 'main'\) it is gated: .*HF_TOKEN"),
             (RevisionNotFoundError("404", response=response), r"org/x .*\(revision 'main'\): no such revision")]
    for error, message in cases:
        monkeypatch.setattr(huggingface_hub, "snapshot_download", _raise(error))
        with pytest.raises(hub.HubRepoError, match=message):
            tformer.from_huggingface("org/x")


def test_environment_variables_in_a_fresh_process(cache, references, tmp_path):
    """HF_HUB_CACHE and HF_HUB_OFFLINE as a user sets them (read by huggingface_hub at import);
    then an unreachable endpoint without HF_HUB_OFFLINE: the error says the Hub was not reached."""
    script = ("import tformer; print(tformer.Translator('%s', revision='v2', beam_size=2, max_length=8)"
              ".translate(%r))" % (REPO, TEXTS))
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == repr(references["v2"])

    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "empty"), "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    script = "import tformer; tformer.from_huggingface('org/unreachable')"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "HubOfflineError" in out.stderr and "the Hub could not be reached (ConnectError" in out.stderr, out.stderr


def _fetched_copy(source, destination, weights="safetensors"):
    """The files of `source` that snapshot_download would fetch with tformer's patterns."""
    from huggingface_hub.utils import filter_repo_objects

    destination.mkdir(parents=True)
    kept = list(filter_repo_objects(sorted(os.listdir(source)), allow_patterns=hub.allow_patterns(weights)))
    for name in kept:
        (destination / name).write_bytes((source / name).read_bytes())
    return destination


def test_the_fetched_files_are_enough_to_translate(model_dirs, references, tmp_path):
    """A checkpoint directory cut down to the fetched files translates as transformers does
    on the whole directory."""
    fetched = _fetched_copy(model_dirs["main"], tmp_path / "fetched")
    assert "model.safetensors" in os.listdir(fetched) and "source.spm" in os.listdir(fetched)
    assert tformer.Translator(str(fetched), **OPTS).translate(TEXTS) == references["main"]


@pytest.mark.parametrize("family,languages", [("marian_separate", [None]), ("bart", [None]),
                                              ("nllb", [None, "deu_Latn"]), ("m2m100", [None, "de"])])
def test_the_fetched_files_are_enough_for_each_tokenizer(family, languages, tmp_path):
    """Each tokenizer family's files, cut down to the fetched ones, encode and decode as
    transformers' tokenizer of the whole directory: no file a loader needs is left out of
    the patterns (Marian's target_vocab.json, M2M100's sentencepiece.bpe.model, ...)."""
    from tformer.tokenizers import load_tokenizer

    builders = {"marian_separate": lambda d: tt.build_marian_tokenizer(d, separate_vocabs=True),
                "bart": tt.build_bart_tokenizer, "nllb": tt.build_nllb_tokenizer, "m2m100": tt.build_m2m100_tokenizer}
    full = builders[family](tmp_path / family)
    fetched = _fetched_copy(full, tmp_path / "fetched")
    for lang in languages:
        ours = load_tokenizer(fetched, source_lang=lang)
        ref = tt.hf_tokenizer(full, **({"src_lang": lang} if lang else {}))
        ref_ids = [ref(t)["input_ids"] for t in tt.TRICKY]
        assert ours.encode(tt.TRICKY) == ref_ids
        assert ours.decode(ref_ids) == [ref.decode(ids, skip_special_tokens=True) for ids in ref_ids]


def test_translate_command_takes_a_hub_id_and_revision(offline, references, tmp_path):
    from tformer.translate_cli import main

    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main([REPO, "--revision", "v2", "-i", str(src), "-o", str(out), "--quiet", "--beam-size",
                 str(OPTS["beam_size"]), "--max-length", str(OPTS["max_length"])]) == 0
    assert out.read_text(encoding="utf-8").splitlines() == references["v2"]


def test_translate_command_names_a_missing_model(offline, tmp_path, capsys):
    from tformer.translate_cli import main

    (tmp_path / "in.txt").write_text("a\n", encoding="utf-8")
    assert main(["tiny-org/absent", "-i", str(tmp_path / "in.txt"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "tiny-org/absent" in err and "Traceback" not in err

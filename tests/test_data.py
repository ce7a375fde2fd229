"""python/tformer/data.py (reading line-aligned corpora, batching by tokens) and
python/tformer/spm.py (sentencepiece tokenizers in the Marian layout)."""
import numpy as np
import pytest

from tformer.data import DataError, TokenizedCorpus, batch_by_tokens, read_lines, read_parallel
from tformer.spm import SubwordTokenizer

FR = ["le chat dort", "j'ai acheté trois pommes", "il y a deux chiens dans le jardin", "elle a vu un oiseau"] * 20
EN = ["the cat sleeps", "I bought three apples", "there are two dogs in the garden", "she saw a bird"] * 20


def write(path, lines, newline="\n"):
    path.write_bytes(newline.join(lines).encode("utf-8") + (newline.encode() if lines else b""))
    return str(path)


# ------------------------------------------------------------------------------ reading


def test_read_parallel_pairs_lines(tmp_path):
    src = write(tmp_path / "a.fr", ["un", "deux", "trois"])
    tgt = write(tmp_path / "a.en", ["one", "two", "three"], newline="\r\n")
    assert read_parallel(src, tgt) == [("un", "one"), ("deux", "two"), ("trois", "three")]


def test_read_parallel_skips_blank_pairs(tmp_path):
    src = write(tmp_path / "a.fr", ["un", "", "trois", "quatre"])
    tgt = write(tmp_path / "a.en", ["one", "two", "three", "  "])
    assert read_parallel(src, tgt) == [("un", "one"), ("trois", "three")]
    with pytest.raises(DataError, match="line 2 is blank on the source side"):
        read_parallel(src, tgt, skip_empty=False)


def test_different_line_counts(tmp_path):
    src = write(tmp_path / "a.fr", ["un", "deux", "trois"])
    tgt = write(tmp_path / "a.en", ["one", "two"])
    with pytest.raises(DataError, match=r"a.fr has 3 lines but .*a.en has 2: .*line-aligned"):
        read_parallel(src, tgt)


def test_empty_file(tmp_path):
    src = write(tmp_path / "a.fr", [])
    tgt = write(tmp_path / "a.en", ["one"])
    with pytest.raises(DataError, match=r"a.fr: the file is empty"):
        read_parallel(src, tgt)
    (tmp_path / "blank.fr").write_text("\n\n  \n")
    with pytest.raises(DataError, match=r"blank.fr: the file is empty"):
        read_lines(tmp_path / "blank.fr")


def test_only_blank_pairs(tmp_path):
    src = write(tmp_path / "a.fr", ["un", ""])
    tgt = write(tmp_path / "a.en", ["", "two"])
    with pytest.raises(DataError, match="no line has text on both sides"):
        read_parallel(src, tgt)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.fr: no such file"):
        read_lines(tmp_path / "nope.fr")
    with pytest.raises(DataError, match="is a directory"):
        read_lines(tmp_path)


def test_not_utf8_names_the_line(tmp_path):
    (tmp_path / "latin1.fr").write_bytes("un\ndeux\nété\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.fr: line 3 is not valid UTF-8"):
        read_lines(tmp_path / "latin1.fr")


def test_utf8_bom_is_dropped(tmp_path):
    (tmp_path / "bom.fr").write_bytes("\ufeffun\ndeux\n".encode("utf-8"))
    assert read_lines(tmp_path / "bom.fr") == ["un", "deux"]


# ------------------------------------------------------------------------------ batching


def _lengths(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, 40, n), rng.integers(2, 40, n)


def test_batches_cover_every_pair_once_within_budget():
    src, tgt = _lengths(1000)
    batches = batch_by_tokens(src, tgt, max_tokens=300, seed=1, epoch=0)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    for b in batches:
        assert len(b) * max(src[b].max(), tgt[b].max()) <= 300
    # bucketing: a batch holds similar lengths, so padding is small
    padded = sum(len(b) * tgt[b].max() for b in batches)
    assert padded < 1.2 * tgt.sum()


def test_batches_are_deterministic_per_seed_and_epoch():
    src, tgt = _lengths(500)
    a = batch_by_tokens(src, tgt, 256, seed=3, epoch=2)
    b = batch_by_tokens(src, tgt, 256, seed=3, epoch=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    c = batch_by_tokens(src, tgt, 256, seed=3, epoch=3)
    d = batch_by_tokens(src, tgt, 256, seed=4, epoch=2)
    assert [x.tolist() for x in a] != [x.tolist() for x in c]
    assert [x.tolist() for x in a] != [x.tolist() for x in d]


def test_batch_limits_and_errors():
    src, tgt = np.array([100, 3, 3, 3]), np.array([5, 3, 3, 3])
    batches = batch_by_tokens(src, tgt, max_tokens=50, shuffle=False)
    assert [b.tolist() for b in batches] == [[1, 2, 3], [0]]  # too long alone: a batch of its own
    assert [len(b) for b in batch_by_tokens([3] * 10, [3] * 10, 1000, max_sentences=4, shuffle=False)] == [4, 4, 2]
    assert batch_by_tokens([], [], 10) == []
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        batch_by_tokens(src, tgt, 0)
    with pytest.raises(ValueError, match="same size"):
        batch_by_tokens([1, 2], [1], 10)


# ------------------------------------------------------------------------------ tokenizers


@pytest.fixture(scope="module")
def shared_tok(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    return SubwordTokenizer.train(FR, EN, d, vocab_size=120), d


def test_tokenizer_ids_and_round_trip(shared_tok):
    tok, d = shared_tok
    src = tok.encode_source(["le chat dort"])[0]
    assert src[-1] == tok.eos_id == 1 and tok.pad_id == 0 and 1 not in src[:-1]
    tgt = tok.encode_target(["the cat sleeps", "I bought three apples"])
    assert all(1 not in t and 0 not in t for t in tgt)
    assert tok.decode_target(tgt) == ["the cat sleeps", "I bought three apples"]
    assert tok.decode_target([tgt[0] + [1, 0]]) == ["the cat sleeps"]  # specials skipped
    assert tok.shared and tok.src_vocab_size == tok.tgt_vocab_size
    assert "".join(tok.source_pieces(src[:-1])).replace("\u2581", " ").strip() == "le chat dort"


def test_tokenizer_save_load_and_marian_reader_agree(shared_tok):
    from tformer.tokenizers import load_tokenizer

    tok, d = shared_tok
    again = SubwordTokenizer.load(d)
    assert again.encode_source(FR[:4]) == tok.encode_source(FR[:4])
    marian = load_tokenizer(d)  # the Marian reader tformer.Translator uses
    assert marian.encode(FR[:4]) == tok.encode_source(FR[:4])
    ids = tok.encode_target(EN[:4])
    assert marian.decode(ids) == tok.decode_target(ids)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_separate_vocabularies(tmp_path, model_type):
    tok = SubwordTokenizer.train(FR, EN, tmp_path, vocab_size=100, model_type=model_type, shared=False)
    assert not tok.shared and (tmp_path / "target_vocab.json").exists()
    loaded = SubwordTokenizer.load(tmp_path)
    ids = loaded.encode_target(EN[:4])
    assert loaded.decode_target(ids) == EN[:4]
    assert loaded.encode_source(FR[:4]) == tok.encode_source(FR[:4])


def test_tokenizer_errors(tmp_path):
    with pytest.raises(ValueError, match="model_type must be one of"):
        SubwordTokenizer.train(FR, EN, vocab_size=50, model_type="wordpiece")
    with pytest.raises(ValueError, match="cannot train a tokenizer on no text"):
        SubwordTokenizer.train(["", " "], [""], vocab_size=50)
    with pytest.raises(FileNotFoundError, match="no tokenizer: missing source.spm, target.spm, vocab.json"):
        SubwordTokenizer.load(tmp_path)


def test_tokenized_corpus_drops_long_pairs(shared_tok):
    tok, _ = shared_tok
    pairs = [("le chat dort", "the cat sleeps"), ("il y a deux chiens dans le jardin " * 5, "there are two dogs")]
    corpus = TokenizedCorpus.from_texts(pairs, tok, max_length=16)
    assert len(corpus) == 1 and corpus.dropped == 1 and corpus.texts == pairs[:1]
    assert corpus.tgt_lengths[0] == len(corpus.tgt[0]) + 1
    src, tgt = corpus.batch([0])
    assert src[0][-1] == tok.eos_id and corpus.num_tokens([0]) == len(src[0]) + len(tgt[0]) + 1

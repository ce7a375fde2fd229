"""`tformer translate` (tformer.translate_cli, tformer.line_chunks) on tiny Marian and
M2M100 checkpoints with real tokenizers (built in test_translator), against transformers'
tokenizer + generate + decode on the same sentences.

Checked: line alignment with blank lines kept, input order after length sorting, chunk
boundaries, n-best formats, --scores (transformers' sequences_scores), stdin/stdout through
a real `python -m tformer.cli translate` process, the speed line, the progress bar, the
M2M100 target language, every error (missing model, unreadable input, bad UTF-8 named by
file and line with the lines before it written, bad options) as one line with its exit
status, and that input is consumed chunk by chunk (memory bounded)."""

import io
import itertools
import subprocess
import sys

import pytest
from tformer.line_chunks import InputLineError, in_input_order, length_sorted_batches, read_line_chunks
from tformer.translate_cli import _Stats, format_result, main

import test_translator as tt
import tf_testlib as lib

# Blank and whitespace-only lines, short and long sentences mixed (so that length sorting
# reorders them), a sentence repeated.
LINES = ["Le chat dort sur le canapé.", "", "Où est la gare ?", "Mon voisin achète une pomme rouge.", "   ",
         "Il pleut.", "Nous avons mangé une soupe délicieuse depuis ce matin.", "Quelle heure est-il ?", "",
         "Ma sœur prépare trois gâteaux au chocolat !", "Il pleut.", "Le musée est fermé le lundi."]
SENTENCES = [line for line in LINES if line.strip()]
OPTS = ["--beam-size", "2", "--max-length", "8"]


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory):
    return tt.build_marian_dir(tmp_path_factory, "translate", seed=11)


@pytest.fixture(scope="module")
def expected(marian_dir):
    """transformers' translations of LINES with beam 2, 8 new tokens, blank lines blank."""
    translated = iter(tt.hf_translate(marian_dir, SENTENCES, num_beams=2, max_new_tokens=8))
    return [next(translated) if line.strip() else "" for line in LINES]


def hf_n_best(directory, texts, n_best, **generate_kwargs):
    """[(text, sequences_score)] * n_best per text, from transformers' generate."""
    import torch

    tok = tt.hf_tokenizer(directory)
    model = tt.hf_model(directory)
    with torch.no_grad(), lib.quiet():
        out = model.generate(**tok(texts, return_tensors="pt", padding=True), num_return_sequences=n_best,
                             output_scores=True, return_dict_in_generate=True, **generate_kwargs)
    pairs = [(tok.decode(seq, skip_special_tokens=True), float(score))
             for seq, score in zip(out.sequences, out.sequences_scores)]
    return [pairs[i * n_best:(i + 1) * n_best] for i in range(len(texts))]


def write_lines(path, lines):
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    return str(path)


def read_lines(path):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    assert text.endswith("\n") or text == ""
    return text.split("\n")[:-1]


def translate_file(tmp_path, model, lines, *options, name="in.txt"):
    src = write_lines(tmp_path / name, lines)
    out = tmp_path / (name + ".out")
    status = main([str(model), "-i", src, "-o", str(out), "--quiet", *options])
    return status, read_lines(out)


# ------------------------------------------------------------------ translations


@pytest.mark.parametrize("options", [
    ["--batch-size", "3", "--chunk-lines", "4"],          # chunks end inside the blank-line runs
    ["--batch-size", "64", "--chunk-lines", "1"],         # one line per chunk
    ["--max-batch-tokens", "20", "--chunk-lines", "100"],  # batches cut by padded tokens
], ids=["chunks4", "chunks1", "max-batch-tokens"])
def test_output_is_line_aligned_and_equals_transformers(tmp_path, marian_dir, expected, options):
    status, got = translate_file(tmp_path, marian_dir, LINES, *OPTS, *options)
    assert status == 0
    assert len(got) == len(LINES)
    assert got == expected
    assert all(got[i] == "" for i, line in enumerate(LINES) if not line.strip())
    assert all(got[i] for i, line in enumerate(LINES) if line.strip())


def test_crlf_input_and_a_last_line_without_newline(tmp_path, marian_dir, expected):
    src = tmp_path / "crlf.txt"
    src.write_bytes(("\r\n".join(LINES)).encode("utf-8"))  # no newline after the last line
    assert main([str(marian_dir), "-i", str(src), "-o", str(tmp_path / "out"), "--quiet", *OPTS]) == 0
    assert read_lines(tmp_path / "out") == expected


@pytest.mark.parametrize("fmt", ["tab", "block"])
def test_n_best_and_scores_equal_transformers(tmp_path, marian_dir, fmt):
    ref = iter(hf_n_best(marian_dir, SENTENCES, 2, num_beams=3, max_new_tokens=8))
    status, got = translate_file(tmp_path, marian_dir, LINES, "--beam-size", "3", "--max-length", "8",
                                 "--num-hypotheses", "2", "--n-best-format", fmt, "--scores", "--batch-size", "4")
    assert status == 0
    per_line = 2 if fmt == "block" else 1
    assert len(got) == per_line * len(LINES)
    for i, line in enumerate(LINES):
        out = got[i * per_line:(i + 1) * per_line]
        if not line.strip():
            assert out == [""] * per_line
            continue
        fields = "\t".join(out).split("\t")
        assert len(fields) == 4  # score, text, score, text
        hyps = next(ref)
        assert [fields[1], fields[3]] == [text for text, _ in hyps]
        for field, (_, score) in zip(fields[0::2], hyps):
            assert float(field) == pytest.approx(score, abs=2e-5)


def test_n_best_without_scores(tmp_path, marian_dir):
    ref = iter(tt.hf_translate(marian_dir, SENTENCES, n_best=2, num_beams=3, max_new_tokens=8))
    status, got = translate_file(tmp_path, marian_dir, LINES, "--beam-size", "3", "--max-length", "8",
                                 "--num-hypotheses", "2")
    assert status == 0
    assert got == ["\t".join(next(ref)) if line.strip() else "" for line in LINES]


def test_m2m100_target_language(tmp_path, tmp_path_factory):
    tok = tt.build_m2m100_tokenizer(tmp_path_factory.mktemp("translate_m2m_tok") / "m2m100")
    directory = tt.build_m2m100_model(tmp_path / "m2m", tok, seed=5, langs=("fr", "en"))
    ref_tok = tt.hf_tokenizer(directory, src_lang="fr")
    for target in ("en", "de"):
        want = iter(tt.hf_translate(directory, SENTENCES, tokenizer_kwargs={"src_lang": "fr"}, num_beams=2,
                                    max_new_tokens=8,
                                    forced_bos_token_id=ref_tok.convert_tokens_to_ids(f"__{target}__")))
        status, got = translate_file(tmp_path, directory, LINES, *OPTS, "--source-lang", "fr", "--target-lang",
                                     target, "--batch-size", "5", name=f"to_{target}.txt")
        assert status == 0
        assert got == [next(want) if line.strip() else "" for line in LINES]


# ------------------------------------------------------------------ the real command


def test_stdin_stdout_in_a_real_process(marian_dir, expected):
    proc = subprocess.run([sys.executable, "-m", "tformer.cli", "translate", str(marian_dir), *OPTS,
                           "--batch-size", "5"],
                          input="".join(line + "\n" for line in LINES).encode("utf-8"), capture_output=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode("utf-8").split("\n")[:-1] == expected
    stderr = proc.stderr.decode()
    # the final speed line, and no progress bar: stderr is not a terminal
    assert f"{len(SENTENCES)} sentences (3 blank lines)" in stderr
    assert "sentences/s" in stderr and "target tokens/s" in stderr
    assert "%|" not in stderr and "B/s" not in stderr


def test_progress_bar_on_request(tmp_path, marian_dir, capsys):
    src = write_lines(tmp_path / "in.txt", LINES)
    assert main([str(marian_dir), "-i", src, "-o", str(tmp_path / "out"), *OPTS, "--progress"]) == 0
    err = capsys.readouterr().err
    assert "100%" in err and f"sentences={len(SENTENCES)}" in err  # the bar, over the file's bytes
    assert "sentences/s" in err.splitlines()[-1]


def test_input_is_read_chunk_by_chunk_and_flushed(marian_dir, monkeypatch, capsys):
    """An endless input: each chunk's translations reach the output (flushed) before the
    input is read beyond the next chunk, so memory holds one chunk whatever the length."""
    chunk = 3
    produced = [0]
    sink = io.BytesIO()
    flushed = []  # output lines at each flush

    def endless():
        for i in itertools.count():
            # reading line i (of chunk i // chunk) needs the chunks two behind it written
            assert len(flushed) >= i // chunk - 1, f"line {i} read before chunk {i // chunk - 2} was written"
            produced[0] = i + 1
            if i == 5 * chunk:
                yield b"\xff\n"  # ends the run: a bad line
            yield "Il pleut.\n".encode()

    class Sink:
        def write(self, data):
            sink.write(data)

        def flush(self):
            flushed.append(sink.getvalue().count(b"\n"))

    monkeypatch.setattr(sys, "stdin", type("In", (), {"buffer": endless()})())
    monkeypatch.setattr(sys, "stdout", type("Out", (), {"buffer": Sink(), "flush": lambda self: None})())
    status = main([str(marian_dir), "--chunk-lines", str(chunk), *OPTS, "--quiet"])
    assert status == 1
    assert produced[0] == 5 * chunk + 1  # not a line more than the bad one
    assert flushed[:5] == [3, 6, 9, 12, 15]
    assert "<stdin>:16: not valid UTF-8" in capsys.readouterr().err


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("chunk_lines", ["2", "100"])
def test_bad_utf8_names_file_and_line_and_keeps_earlier_lines(tmp_path, marian_dir, expected, chunk_lines, capsys):
    src = tmp_path / "bad.txt"
    good = LINES[:3]
    src.write_bytes("".join(line + "\n" for line in good).encode() + b"caf\xe9 au lait\n" + b"Il pleut.\n")
    out = tmp_path / "out.txt"
    status = main([str(marian_dir), "-i", str(src), "-o", str(out), *OPTS, "--chunk-lines", chunk_lines])
    err = capsys.readouterr().err
    assert status == 1
    assert f"{src}:4: not valid UTF-8 (byte 0xe9 at byte offset 3 of the line)" in err
    assert "the 3 line(s) before it were translated and written" in err
    assert "Traceback" not in err
    assert read_lines(out) == expected[:3]


def test_missing_model_is_one_line_exit_2(tmp_path):
    src = write_lines(tmp_path / "in.txt", ["Il pleut."])
    proc = subprocess.run([sys.executable, "-m", "tformer.cli", "translate", str(tmp_path / "no_such_model"),
                           "-i", src], capture_output=True, timeout=300)
    err = proc.stderr.decode()
    assert proc.returncode == 2
    assert err.startswith(f"tformer translate: cannot load the model {tmp_path / 'no_such_model'}: ")
    assert "Traceback" not in err and proc.stdout == b""


def test_unreadable_input_and_output(tmp_path, marian_dir, capsys):
    missing = tmp_path / "missing.txt"
    assert main([str(marian_dir), "-i", str(missing)]) == 2
    assert f"cannot read the input file {missing}: No such file or directory" in capsys.readouterr().err
    assert main([str(marian_dir), "-i", str(tmp_path)]) in (1, 2)  # a directory
    assert str(tmp_path) in capsys.readouterr().err
    src = write_lines(tmp_path / "in.txt", ["Il pleut."])
    bad_out = tmp_path / "no_dir" / "out.txt"
    assert main([str(marian_dir), "-i", src, "-o", str(bad_out)]) == 2
    assert f"cannot write the output file {bad_out}" in capsys.readouterr().err


@pytest.mark.parametrize("options,message", [
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--chunk-lines", "0"], "--chunk-lines must be >= 1, got 0"),
    (["--max-batch-tokens", "-1"], "--max-batch-tokens must be >= 1, got -1"),
    (["--beam-size", "0"], "--beam-size must be >= 1, got 0"),
    (["--threads", "-1"], "--threads must be >= 0 (0: tformer's choice), got -1"),
    (["--beam-size", "2", "--num-hypotheses", "3"], "num_hypotheses"),
    (["--target-lang", "de"], "translates into one language"),
])
def test_bad_options_are_named(tmp_path, marian_dir, capsys, options, message):
    src = write_lines(tmp_path / "in.txt", ["Il pleut."])
    assert main([str(marian_dir), "-i", src, "-o", str(tmp_path / "out"), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ------------------------------------------------------------------ the pieces


def test_read_line_chunks_is_lazy():
    consumed = [0]

    def lines():
        for i in itertools.count():
            consumed[0] = i + 1
            yield f"{i}\n".encode()

    chunks = read_line_chunks(lines(), "big.txt", chunk_lines=1000)
    assert next(chunks) == [str(i) for i in range(1000)]
    assert consumed[0] == 1000
    assert next(chunks)[0] == "1000" and consumed[0] == 2000
    with pytest.raises(ValueError, match="chunk_lines must be >= 1"):
        next(read_line_chunks(iter([b"x\n"]), chunk_lines=0))


def test_read_line_chunks_yields_the_lines_before_a_bad_one():
    chunks = read_line_chunks(iter([b"a\n", b"b\r\n", b"\xc3(\n", b"d\n"]), "f.txt", chunk_lines=10)
    assert next(chunks) == ["a", "b"]
    with pytest.raises(InputLineError, match=r"^f.txt:3: not valid UTF-8") as e:
        next(chunks)
    assert (e.value.name, e.value.line_number) == ("f.txt", 3)


def test_length_sorted_batches():
    lengths = [3, 9, 1, 9, 4, 2, 7]
    batches = length_sorted_batches(lengths, batch_size=3)
    assert batches == [[1, 3, 6], [4, 0, 5], [2]]  # longest first, ties in input order
    by_tokens = length_sorted_batches(lengths, batch_size=10, max_batch_tokens=18)
    assert sorted(i for b in by_tokens for i in b) == list(range(len(lengths)))
    for batch in by_tokens:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 18
    assert length_sorted_batches([50, 1], batch_size=4, max_batch_tokens=10) == [[0], [1]]  # too long: alone
    results = [[f"r{i}" for i in b] for b in batches]
    assert in_input_order(batches, results, len(lengths)) == [f"r{i}" for i in range(len(lengths))]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        length_sorted_batches([1], 0)


@pytest.mark.parametrize("lines, sentences, counts", [
    (1, 1, "1 sentence (0 blank lines)"), (3, 1, "1 sentence (2 blank lines)"), (3, 2, "2 sentences (1 blank line)")])
def test_speed_line_counts(lines, sentences, counts):
    stats = _Stats()
    stats.lines, stats.sentences = lines, sentences
    assert stats.line().startswith(f"tformer translate: {counts} in ")


def test_format_result():
    assert format_result(["a b"], [-0.5]) == "a b"
    assert format_result(["a\tb", "c"], [-0.5, -1.25], "tab", with_scores=True) == "-0.500000\ta b\t-1.250000\tc"
    assert format_result(["a\nb", "c"], [0, 0], "block") == "a b\nc"
    assert format_result(["a\tb"], [0]) == "a\tb"  # one field: a tab in the text separates nothing


def test_output_to_a_closed_pipe_ends_quietly(marian_dir):
    """`tformer translate ... | head -n 1`: the reader leaves; no traceback, a non-zero status."""
    lines = "".join(line + "\n" for line in SENTENCES * 50).encode("utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "tformer.cli", "translate", str(marian_dir), *OPTS,
                             "--chunk-lines", "8", "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdin.write(lines)
    proc.stdin.close()
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1
    assert first.strip() and "Traceback" not in err and err == ""


def test_a_read_error_part_way_is_named_after_the_lines_written(marian_dir, monkeypatch, capsys):
    sink = io.BytesIO()

    def failing():
        yield b"Il pleut.\n"
        yield b"Quelle heure est-il ?\n"
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sys, "stdin", type("In", (), {"buffer": failing()})())
    monkeypatch.setattr(sys, "stdout", type("Out", (), {"buffer": sink, "flush": lambda self: None})())
    assert main([str(marian_dir), *OPTS, "--chunk-lines", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "reading <stdin> or writing <stdout> failed after 2 line(s): Input/output error" in err
    assert sink.getvalue().count(b"\n") == 2


def test_progress_without_tqdm_says_so(tmp_path, marian_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    src = write_lines(tmp_path / "in.txt", ["Il pleut."])
    assert main([str(marian_dir), "-i", src, "-o", str(tmp_path / "out"), *OPTS, "--progress", "--quiet"]) == 0
    assert "no progress bar: tqdm is not installed (pip install tqdm)" in capsys.readouterr().err
    assert len(read_lines(tmp_path / "out")) == 1

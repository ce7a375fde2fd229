"""`tformer translate MODEL [-i FILE] [-o FILE]`: translate a text file, one sentence per
line, with tformer.Translator (docs in README "Use" and `tformer translate --help`).

The output is line-aligned with the input: line i of the output is the translation of
line i of the input (with --num-hypotheses N --n-best-format block: lines (i-1)*N+1 ..
i*N), and a blank input line gives a blank output line without reaching the model. The
input is read and written in chunks of --chunk-lines lines (memory stays bounded whatever
the file's length), each chunk's sentences decoded in length-sorted batches and written
in input order, then flushed: a failure later in the file never loses what was written.

Exit status: 0 done; 1 the input failed part way (a line that is not UTF-8, a read error;
the lines before it are written); 2 nothing could start (options, model, input or output
file)."""
from __future__ import annotations

import argparse
import os
import sys
import time

from .line_chunks import DEFAULT_CHUNK_LINES, InputLineError, in_input_order, length_sorted_batches, read_line_chunks

_PROG = "tformer translate"


class _Fatal(Exception):
    """An error the command reports in one line (no traceback), with its exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `tformer translate` on parser `p`."""
    p.add_argument("model", help="the model: a local Hugging Face directory (weights, config, tokenizer files), "
                                 "a directory tformer wrote (tformer train --out, tformer demo's model/), or a "
                                 "Hugging Face Hub id (tformer[hub]), as tformer.Translator takes it")
    p.add_argument("--revision", default=None, help="with a Hub id: the branch, tag or commit (default main)")
    p.add_argument("-i", "--input", default="-", metavar="FILE", help="text to translate, one sentence per line, "
                                                                      "UTF-8 (default '-': standard input)")
    p.add_argument("-o", "--output", default="-", metavar="FILE",
                   help="where the translations go, line-aligned with the input (default '-': standard output)")
    p.add_argument("--beam-size", type=int, default=None, help="beam size (default: the model directory's)")
    p.add_argument("--max-length", type=int, default=None, help="largest number of target tokens "
                                                                "(default: the model directory's)")
    p.add_argument("--num-hypotheses", type=int, default=1, metavar="N",
                   help="write the N best translations of each line, best first (N <= beam size; default 1)")
    p.add_argument("--n-best-format", choices=["tab", "block"], default="tab",
                   help="with N > 1: 'tab' writes one line per input line, its hypotheses separated by tabs; "
                        "'block' writes exactly N lines per input line (no separator: output lines (i-1)*N+1..i*N "
                        "belong to input line i; a blank input line gives N blank lines) (default tab)")
    p.add_argument("--scores", action="store_true",
                   help="write each hypothesis's score before its text, tab-separated (beam search: the "
                        "length-normalized log-probability, transformers' sequences_scores; greedy: the sum of "
                        "log-probabilities)")
    p.add_argument("--source-lang", default=None, help="source language of multilingual models "
                                                       "(M2M100: fr, NLLB: fra_Latn)")
    p.add_argument("--target-lang", default=None, help="target language of multilingual models "
                                                       "(M2M100: en, NLLB: eng_Latn)")
    p.add_argument("--device", default=None, help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", default=None, help="float32, int8 (CPU), float16 or bfloat16 (CUDA) "
                                                 "(default: a tformer directory's saved dtype, else float32)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for tformer (default: its own choice)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per generate call (default 32)")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="also cap a batch at this many padded source tokens (sentences x the longest); "
                        "sentences are sorted by length inside each chunk, written in input order (default: none)")
    p.add_argument("--chunk-lines", type=int, default=DEFAULT_CHUNK_LINES,
                   help=f"lines read, translated and written (flushed) at a time: bounds the memory used "
                        f"(default {DEFAULT_CHUNK_LINES})")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on standard error (default: only when standard error is a terminal)")
    p.add_argument("--quiet", action="store_true", help="no final speed line on standard error")


def _check_options(args) -> None:
    for name in ("batch_size", "chunk_lines", "num_hypotheses"):
        if getattr(args, name) < 1:
            raise _Fatal(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}", 2)
    for name in ("beam_size", "max_length", "max_batch_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise _Fatal(f"--{name.replace('_', '-')} must be >= 1, got {value}", 2)
    if args.threads < 0:
        raise _Fatal(f"--threads must be >= 0 (0: tformer's choice), got {args.threads}", 2)


def _open_input(path):
    """(binary stream, name for messages, size in bytes or None)."""
    if path == "-":
        return sys.stdin.buffer, "<stdin>", None
    try:
        f = open(path, "rb")
    except OSError as e:
        raise _Fatal(f"cannot read the input file {path}: {e.strerror or e}", 2) from None
    try:
        size = os.fstat(f.fileno()).st_size if os.path.isfile(path) else None
    except OSError:
        size = None
    return f, path, size


def _open_output(path):
    """(binary stream, name for messages)."""
    if path == "-":
        sys.stdout.flush()
        return sys.stdout.buffer, "<stdout>"
    try:
        return open(path, "wb"), path
    except OSError as e:
        raise _Fatal(f"cannot write the output file {path}: {e.strerror or e}", 2) from None


def _load_translator(args):
    """tformer.Translator as `tformer serve` loads it; any failure is reported in one line."""
    import tformer

    if args.threads:
        tformer.set_num_threads(args.threads)
    defaults = {k: v for k, v in dict(beam_size=args.beam_size, max_length=args.max_length, revision=args.revision,
                                      source_lang=args.source_lang, target_lang=args.target_lang).items()
                if v is not None}
    try:
        translator = tformer.Translator(args.model, device=args.device, dtype=args.dtype, **defaults)
        translator.tokenizer.target_prefix(args.target_lang)  # an unknown language is named now, not later
    except Exception as e:  # noqa: BLE001 - the loader's own message, without a traceback
        raise _Fatal(f"cannot load the model {args.model}: {e}", 2) from None
    return translator


def _clean(text: str, tabs: bool) -> str:
    """One output field: line breaks (and tabs where tabs separate fields) become spaces,
    so that output lines stay aligned with input lines."""
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return text.replace("\t", " ") if tabs else text


def format_result(texts, scores, n_best_format: str = "tab", with_scores: bool = False) -> str:
    """The output of one input line (without its final newline): the hypotheses `texts`
    (best first), each preceded by its score and a tab when with_scores; several
    hypotheses joined by tabs ('tab') or one per line ('block')."""
    tabs = with_scores or (len(texts) > 1 and n_best_format == "tab")
    fields = [(f"{score:.6f}\t" if with_scores else "") + _clean(text, tabs) for text, score in
              zip(texts, scores if with_scores else [None] * len(texts))]
    return ("\t" if n_best_format == "tab" else "\n").join(fields)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


class _Stats:
    def __init__(self):
        self.lines = self.sentences = self.target_tokens = 0
        self.start = time.perf_counter()

    def line(self) -> str:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        blank = self.lines - self.sentences
        return (f"{_PROG}: {_count(self.sentences, 'sentence')} ({_count(blank, 'blank line')}) in {seconds:.2f} s: "
                f"{self.sentences / seconds:.1f} sentences/s, {self.target_tokens / seconds:.1f} target tokens/s")


def translate_chunk(translator, lines, options, batch_size=32, max_batch_tokens=None, n_best_format="tab",
                    stats=None) -> str:
    """The output text of one chunk of input lines (one "\\n"-terminated entry per line, N
    lines per line in block format): blank lines stay blank, the others are translated in
    length-sorted batches and put back in input order."""
    options = dict(options)
    with_scores = bool(options.pop("return_scores", False))
    n_best = int(options.get("num_hypotheses", 1))
    blank = "\n" * n_best if n_best_format == "block" else "\n"
    indices = [i for i, line in enumerate(lines) if line.strip()]
    texts = [lines[i] for i in indices]
    out = [blank] * len(lines)
    if texts:
        src_ids, target_lang = translator._source_ids(texts, options.pop("source_lang", None),
                                                      options.pop("target_lang", None), None, None)
        batches = length_sorted_batches([len(ids) for ids in src_ids], batch_size, max_batch_tokens)
        options["return_scores"] = with_scores
        results = [translator._translate_ids([src_ids[i] for i in batch], target_lang, options)
                   for batch in batches]
        for i, result in zip(indices, in_input_order(batches, results, len(texts))):
            out[i] = format_result(result.texts, result.scores, n_best_format, with_scores) + "\n"
            if stats is not None:
                stats.target_tokens += sum(len(t) for t in result.tokens)
    if stats is not None:
        stats.lines += len(lines)
        stats.sentences += len(texts)
    return "".join(out)


class _CountingLines:
    """Iterates the byte lines of a stream, counting the bytes handed out (the progress bar)."""

    def __init__(self, stream):
        self.stream, self.bytes = stream, 0

    def __iter__(self):
        for raw in self.stream:
            self.bytes += len(raw)
            yield raw


def _progress_bar(args, size):
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        print(f"{_PROG}: no progress bar: tqdm is not installed (pip install tqdm)", file=sys.stderr)
        return None
    return tqdm(total=size, unit="B", unit_scale=True, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def _translate_stream(args, translator, source, source_name, size, sink, sink_name, stats):
    options = {"num_hypotheses": args.num_hypotheses}
    if args.scores:
        options["return_scores"] = True
    for key in ("source_lang", "target_lang"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    counted = _CountingLines(source)
    bar = _progress_bar(args, size)
    try:
        for lines in read_line_chunks(counted, source_name, args.chunk_lines):
            try:
                text = translate_chunk(translator, lines, options, args.batch_size, args.max_batch_tokens,
                                       args.n_best_format, stats)
            except (ValueError, TypeError) as e:  # an option the model refuses (beam size, language), named
                raise _Fatal(str(e), 2) from None
            sink.write(text.encode("utf-8"))
            sink.flush()
            if bar is not None:
                bar.update(counted.bytes - bar.n)
                bar.set_postfix(sentences=stats.sentences, refresh=False)
    except InputLineError as e:
        sink.flush()
        raise _Fatal(f"{e}; the {e.line_number - 1} line(s) before it were translated and written to "
                     f"{sink_name}", 1) from None
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            raise
        raise _Fatal(f"reading {source_name} or writing {sink_name} failed after {stats.lines} line(s): "
                     f"{e.strerror or e}", 1) from None
    finally:
        if bar is not None:
            bar.close()


def run(args) -> int:
    """Runs `tformer translate` with parsed arguments; returns the exit status (errors are
    printed on standard error in one line)."""
    opened = []  # the files this call opened (not stdin / stdout), closed at the end
    try:
        _check_options(args)
        source, source_name, size = _open_input(args.input)
        if args.input != "-":
            opened.append(source)
        translator = _load_translator(args)
        sink, sink_name = _open_output(args.output)
        if args.output != "-":
            opened.append(sink)
        stats = _Stats()
        _translate_stream(args, translator, source, source_name, size, sink, sink_name, stats)
    except _Fatal as e:
        print(f"{_PROG}: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:  # Ctrl-C: what was written stays, said in one line
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tformer translate ... | head`: the reader left, nothing to report
        if args.output == "-":  # Python's recipe: no second error when the interpreter flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        for stream in opened:
            stream.close()
    if not args.quiet:
        print(stats.line(), file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """`tformer translate` on its own: parses argv (default sys.argv[1:]) and runs."""
    p = argparse.ArgumentParser(prog=_PROG, description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

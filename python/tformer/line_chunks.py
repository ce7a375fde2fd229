"""Line-aligned text in bounded memory, for `tformer translate`: a byte stream read as
chunks of numbered lines (decoded one by one, so that a bad line is named by its number),
and the sentences of a chunk grouped into length-sorted batches whose results are put back
in input order."""
from __future__ import annotations

DEFAULT_CHUNK_LINES = 4000


class InputLineError(ValueError):
    """A line of the input that cannot be read (not UTF-8): names the file and line."""

    def __init__(self, name: str, line_number: int, reason: str):
        super().__init__(f"{name}:{line_number}: {reason}")
        self.name, self.line_number, self.reason = name, line_number, reason


def _decode(raw: bytes, name: str, line_number: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputLineError(name, line_number, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte offset "
                                                f"{e.start} of the line)") from None
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):  # a CRLF file: the line is the same sentence
        text = text[:-1]
    return text


def read_line_chunks(stream, name: str = "<stdin>", chunk_lines: int = DEFAULT_CHUNK_LINES):
    """Yields lists of at most `chunk_lines` decoded lines (without their line ending) read
    lazily from the binary `stream` (anything iterable by byte lines). A line that is not
    UTF-8 raises InputLineError naming `name` and its 1-based number, after the lines
    before it (the partial chunk) were yielded, so that the caller writes them first."""
    if chunk_lines < 1:
        raise ValueError(f"chunk_lines must be >= 1, got {chunk_lines}")
    chunk = []
    for line_number, raw in enumerate(stream, 1):
        try:
            chunk.append(_decode(raw, name, line_number))
        except InputLineError:
            if chunk:
                yield chunk
            raise
        if len(chunk) == chunk_lines:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def length_sorted_batches(lengths, batch_size: int, max_batch_tokens: int | None = None):
    """Indices into `lengths` (token counts) grouped into batches, longest first, so that
    sentences of similar length share a batch (less padding). A batch holds at most
    `batch_size` sentences and, when max_batch_tokens is given, at most that many padded
    source tokens (sentences x its longest); a longer sentence gets a batch of its own."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: equal lengths keep input order
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for i in order:
        grown = max(longest, lengths[i]) * (len(batch) + 1)
        if batch and (len(batch) == batch_size or (max_batch_tokens is not None and grown > max_batch_tokens)):
            batches.append(batch)
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, lengths[i])
    if batch:
        batches.append(batch)
    return batches


def in_input_order(batches, batch_results, count: int) -> list:
    """The results of `batches` (lists of indices, as length_sorted_batches gives them),
    each batch's results in its order, put back at their indices: a list of `count`."""
    out = [None] * count
    for batch, results in zip(batches, batch_results):
        if len(results) != len(batch):
            raise ValueError(f"a batch of {len(batch)} sentences got {len(results)} results")
        for i, result in zip(batch, results):
            out[i] = result
    return out


__all__ = ["DEFAULT_CHUNK_LINES", "InputLineError", "in_input_order", "length_sorted_batches", "read_line_chunks"]

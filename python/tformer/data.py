"""Parallel corpora for training: line-aligned text files, tokenized into id lists, and
batches by token count with length bucketing (fairseq's recipe: sort by length with random
ties, cut batches under a token budget, shuffle the batches). The batches of an epoch
depend only on the lengths, the seed and the epoch, so a resumed run sees the same ones.

    >>> pairs = read_parallel("train.fr", "train.en")          # [(fr, en), ...]
    >>> corpus = TokenizedCorpus.from_texts(pairs, tokenizer)  # src ids with EOS, tgt without
    >>> batches = batch_by_tokens(corpus.src_lengths, corpus.tgt_lengths, max_tokens=4096,
    ...                           seed=0, epoch=3)             # [array of indices, ...]
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """A training or validation file that cannot be used (the message names the file)."""


def read_lines(path) -> list:
    """The lines of a UTF-8 text file, without their line endings."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected a text file with one sentence per line")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8 (byte {e.start}); "
                        "the files must be UTF-8 text, one sentence per line") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_parallel(src_path, tgt_path, skip_empty: bool = True) -> list:
    """Sentence pairs of two line-aligned files (line i of one translates line i of the other).

    Raises DataError when a file is empty, not UTF-8, or the line counts differ. Pairs in
    which either side is blank are dropped when `skip_empty` (an error otherwise)."""
    src = read_lines(src_path)
    tgt = read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
                        "the source and target files must be line-aligned (one sentence pair per line)")
    pairs = []
    for i, (s, t) in enumerate(zip(src, tgt)):
        s, t = s.strip(), t.strip()
        if not s or not t:
            if not skip_empty:
                raise DataError(f"{src_path}/{tgt_path}: line {i + 1} is blank on the "
                                f"{'source' if not s else 'target'} side")
            continue
        pairs.append((s, t))
    if not pairs:
        raise DataError(f"{src_path}/{tgt_path}: no line has text on both sides")
    return pairs


@dataclass
class TokenizedCorpus:
    """Token ids of sentence pairs: `src` with EOS (as the tokenizer gives them), `tgt`
    without special tokens (the trainer adds the start token and EOS)."""

    src: list
    tgt: list
    texts: list          # the (source, target) strings kept, same order
    dropped: int = 0     # pairs dropped for being longer than max_length

    @classmethod
    def from_texts(cls, pairs, tokenizer, max_length: int = 0) -> "TokenizedCorpus":
        """Tokenizes pairs; with `max_length` > 0, pairs whose source (EOS included) or target
        (+1 for EOS) is longer are dropped, and so are pairs with an empty side after tokenizing."""
        pairs = list(pairs)
        src = tokenizer.encode_source([p[0] for p in pairs])
        tgt = tokenizer.encode_target([p[1] for p in pairs])
        keep = [i for i in range(len(pairs))
                if len(src[i]) > 1 and tgt[i] and (max_length <= 0 or max(len(src[i]), len(tgt[i]) + 1) <= max_length)]
        return cls([src[i] for i in keep], [tgt[i] for i in keep], [pairs[i] for i in keep], len(pairs) - len(keep))

    def __len__(self):
        return len(self.src)

    @property
    def src_lengths(self) -> np.ndarray:
        """Each source sentence's length in tokens."""
        return np.fromiter((len(s) for s in self.src), dtype=np.int64, count=len(self.src))

    @property
    def tgt_lengths(self) -> np.ndarray:
        """Each target's length as the decoder predicts it (the target and EOS)."""
        # +1: the decoder predicts the target followed by EOS
        return np.fromiter((len(t) + 1 for t in self.tgt), dtype=np.int64, count=len(self.tgt))

    def batch(self, indices):
        """(src id lists, tgt id lists) of the given pair indices."""
        return [self.src[i] for i in indices], [self.tgt[i] for i in indices]

    def num_tokens(self, indices) -> int:
        """Real (unpadded) source + target tokens of these pairs."""
        return int(sum(len(self.src[i]) + len(self.tgt[i]) + 1 for i in indices))


def batch_by_tokens(src_lengths, tgt_lengths, max_tokens: int, seed: int = 0, epoch: int = 0,
                    max_sentences: int = 0, shuffle: bool = True) -> list:
    """Index batches whose padded size, sentences × max(longest source, longest target),
    stays within `max_tokens` (a pair longer than that alone gets a batch of its own).

    Pairs are sorted by (target, source) length, ties broken by a permutation drawn from
    (seed, epoch), cut into batches in that order, and the batch order is shuffled with the
    same generator. `max_sentences` > 0 caps the sentences per batch. Deterministic: the
    same lengths, seed and epoch give the same batches."""
    src_lengths = np.asarray(src_lengths, dtype=np.int64)
    tgt_lengths = np.asarray(tgt_lengths, dtype=np.int64)
    if src_lengths.shape != tgt_lengths.shape or src_lengths.ndim != 1:
        raise ValueError(f"src_lengths and tgt_lengths must be 1-D of the same size, got {src_lengths.shape} "
                         f"and {tgt_lengths.shape}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    n = len(src_lengths)
    if n == 0:
        return []
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    # stable sort after the random permutation: equal lengths end up in random order
    order = order[np.lexsort((src_lengths[order], tgt_lengths[order]))]
    widths = np.maximum(src_lengths, tgt_lengths)[order]
    batches, start, longest = [], 0, 0
    for i in range(n):
        longest_with = max(longest, int(widths[i]))
        count = i - start + 1
        if count > 1 and (longest_with * count > max_tokens or (max_sentences and count > max_sentences)):
            batches.append(order[start:i])
            start, longest_with = i, int(widths[i])
        longest = longest_with
    batches.append(order[start:])
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def shard_batch(batch, rank: int, world_size: int):
    """Rank `rank`'s part of a global batch in data-parallel training: every world_size-th
    pair starting at `rank`. A batch is sorted by length, so the parts have nearly equal
    padded sizes, and the parts of all ranks together are exactly the global batch: N ranks
    with budget B see what one process with budget N·B sees."""
    if isinstance(world_size, bool) or not isinstance(world_size, (int, np.integer)) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    return batch[rank::world_size]


def epoch_batches(corpus: TokenizedCorpus, max_tokens: int, seed: int, epoch: int, max_sentences: int = 0) -> list:
    """The training batches of one epoch (see `batch_by_tokens`)."""
    return batch_by_tokens(corpus.src_lengths, corpus.tgt_lengths, max_tokens, seed=seed, epoch=epoch,
                           max_sentences=max_sentences)


def fixed_batches(corpus: TokenizedCorpus, max_tokens: int) -> list:
    """Batches in length order without shuffling (for evaluation)."""
    return batch_by_tokens(corpus.src_lengths, corpus.tgt_lengths, max_tokens, shuffle=False)


def corpus_fingerprint(*paths) -> list:
    """Path and size of each file: a resumed run checks that its data did not change."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append({"path": os.path.abspath(p), "size": st.st_size})
    return out

"""Position tables: the sinusoids of the paper and of the model families we load.

Each function returns a float32 array (num_positions, dim).
"""
import numpy as np


_BLOCK_ROWS = 4096  # rows computed in float64 at a time: the float64 temporaries stay small


def _by_row_blocks(num_positions: int, dim: int, rows_of) -> np.ndarray:
    """A float32 (num_positions, dim) table filled block by block from rows_of(pos), pos a
    float64 column of positions returning the float64 rows (same values as one big call)."""
    out = np.empty((num_positions, dim), dtype=np.float32)
    for start in range(0, num_positions, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, num_positions)
        out[start:stop] = rows_of(np.arange(start, stop, dtype=np.float64)[:, None])
    return out


def sinusoidal_interleaved(num_positions: int, dim: int) -> np.ndarray:
    """The paper's PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)."""
    i = np.arange(dim, dtype=np.float64)[None, :]
    denom = np.power(10000.0, 2.0 * (i // 2) / dim)

    def rows(pos):
        angle = pos / denom
        return np.where(i % 2 == 0, np.sin(angle), np.cos(angle))

    return _by_row_blocks(num_positions, dim, rows)


def sinusoidal_marian(num_positions: int, dim: int) -> np.ndarray:
    """Marian/opus-mt: the same frequencies, sines in the first half, cosines in the second."""
    j = np.arange(dim, dtype=np.float64)[None, :]
    denom = np.power(10000.0, 2.0 * (j // 2) / dim)
    half = dim // 2 if dim % 2 == 0 else dim // 2 + 1

    def rows(pos):
        enc = pos / denom
        out = np.empty((pos.shape[0], dim), dtype=np.float64)
        out[:, :half] = np.sin(enc[:, 0::2])
        out[:, half:] = np.cos(enc[:, 1::2])
        return out

    return _by_row_blocks(num_positions, dim, rows)


def sinusoidal_fairseq(num_positions: int, dim: int, padding_idx) -> np.ndarray:
    """fairseq/M2M100 (tensor2tensor): frequencies exp(-k ln(10000) / (half - 1)),
    sines then cosines, computed in float32 as the reference does; the padding row is 0."""
    half = dim // 2
    step = np.float32(np.log(10000.0) / (half - 1)) if half > 1 else np.float32(0.0)
    freq = np.exp(np.arange(half, dtype=np.float32) * -step).astype(np.float32)
    angle = np.arange(num_positions, dtype=np.float32)[:, None] * freq[None, :]
    table = np.concatenate([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)
    if dim % 2 == 1:
        table = np.concatenate([table, np.zeros((num_positions, 1), np.float32)], axis=1)
    if padding_idx is not None:
        table[padding_idx, :] = 0
    return table


def make_table(kind: str, num_positions: int, dim: int, padding_idx=None):
    """The fixed table for `kind`, or None for learned positions."""
    if kind == "sinusoidal":
        return sinusoidal_interleaved(num_positions, dim)
    if kind == "sinusoidal_marian":
        return sinusoidal_marian(num_positions, dim)
    if kind == "sinusoidal_fairseq":
        return sinusoidal_fairseq(num_positions, dim, padding_idx)
    if kind == "learned":
        return None
    raise ValueError(
        f"unknown positions kind {kind!r}: expected 'sinusoidal', 'sinusoidal_marian', "
        "'sinusoidal_fairseq' or 'learned'"
    )

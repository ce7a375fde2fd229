"""Type aliases of the public API, for annotating code that calls tformer.

    >>> from tformer.types import TokenIds
    >>> def translate_ids(model: tformer.Transformer, ids: TokenIds) -> list[list[int]]: ...

Imported by tformer's own modules only while type checking (numpy.typing costs import time).
"""
from __future__ import annotations

import os
from typing import Any, Sequence, Union

import numpy as np
import numpy.typing as npt

#: Token ids of a batch: a list of token-id lists (lengths may differ) or a 2-D integer array.
TokenIds = Union[Sequence[Sequence[int]], npt.NDArray[np.integer[Any]]]
#: Token ids of one source (generate_stream, Engine.stream): one list, or a batch of one.
SourceIds = Union[Sequence[int], TokenIds]
#: A float32 numpy array (logits, encoder output, parameters).
FloatArray = npt.NDArray[np.float32]
#: A directory or file name.
PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["TokenIds", "SourceIds", "FloatArray", "PathLike"]

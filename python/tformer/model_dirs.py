"""Where a model is named by a path: one loader for Translator, Engine, `tformer serve` and
`tformer translate`, so that each takes both kinds of model directory.

- A directory tformer wrote (`Transformer.save`, `tformer train --out`, `tformer demo`'s
  `model/`): config.json says `"format": "tformer"`; read with `Transformer.load`, in its saved
  dtype unless `dtype` is given (an int8 export stays int8).
- Anything else: a Hugging Face directory, or a Hub id where no such directory exists; read with
  `from_huggingface`, in float32 unless `dtype` is given."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Transformer
    from .types import PathLike


def is_tformer_model_dir(path: PathLike) -> bool:
    """True when `path` is a directory whose config.json is tformer's own format."""
    from .io import FORMAT
    from .json_files import read_json_object

    config = os.path.join(os.fspath(path), "config.json")
    return os.path.isfile(config) and read_json_object(config).get("format") == FORMAT


def load_model_dir(path: PathLike, device: str | None = None, dtype: str | None = None) -> Transformer:
    """The model in `path` (a local directory of either kind, or a Hub id) on `device`
    (default cpu) in `dtype` (default: the saved dtype of a tformer directory, float32 else)."""
    from .convert.huggingface import from_huggingface
    from .model import Transformer

    if is_tformer_model_dir(path):
        return Transformer.load(path, device=device or "cpu", dtype=dtype)
    return from_huggingface(path, device=device or "cpu", dtype=dtype or "float32")

"""tformer's own format: a directory with config.json (the TransformerConfig, its `extra`
included, and the dtype the weights are stored in) and model.safetensors (the parameters
under tformer's names; in an int8 file each int8 matrix "<name>" comes with its float32
per-row scales "<name>.scale", docs/QUANTIZATION.md). Files are written
to a temporary name, fsynced and renamed (atomic_files), so neither a crash nor a power
loss leaves a half-written model.

Only the file format lives here: this module reads and writes configs and arrays and knows
nothing of the model class (model.py uses it, never the other way round)."""
from __future__ import annotations

import json
import os

import numpy as np

from .atomic_files import atomic_write
from .config import TransformerConfig, check_generation_ids, located
from .json_files import read_json_object
from .weights import load_safetensors

FORMAT = "tformer"
FORMAT_VERSION = 1        # float32 weights
INT8_FORMAT_VERSION = 2   # int8 matrices + ".scale" tensors: older tformers refuse the file by its version
SCALE_SUFFIX = ".scale"
SAVED_DTYPES = ("float32", "int8")
# Recorded in an int8 file's config.json: what the numbers mean (tformer/ops/int8.h's rule).
INT8_SCHEME = {
    "name": "int8_per_row",
    "weights": "symmetric int8 in [-127, 127], one float32 scale per row: w[r][c] ~= q[r][c] * scale[r], "
               "scale[r] = max|w[r]| / 127",
    "activations": "float32, quantized per row by the same rule on entry to each int8 matrix product",
    "scale_suffix": SCALE_SUFFIX,
}


def write_model_dir(path, config: TransformerConfig, params: dict, int8_params: dict | None = None) -> None:
    """Writes `params` (tformer name -> float array) and `config` into directory `path`
    (created if needed). int8_params (name -> (int8 q, float32 scale)): the matrices of an
    int8 model, stored as "<name>" (I8) and "<name>.scale" (F32), bit for bit."""
    from safetensors.numpy import save_file

    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    tensors = dict(params)
    for name, (q, scale) in (int8_params or {}).items():
        tensors[name] = q
        tensors[name + SCALE_SUFFIX] = scale
    atomic_write(os.path.join(path, "model.safetensors"),
                  lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    if int8_params:
        meta = {"format": FORMAT, "format_version": INT8_FORMAT_VERSION, "dtype": "int8",
                "quantization": INT8_SCHEME, "config": config.to_dict()}
    else:
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "dtype": "float32", "config": config.to_dict()}

    def write_json(tmp):
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=2)

    atomic_write(os.path.join(path, "config.json"), write_json)


class SavedModel:
    """A model directory read by read_saved_model: its config, its tensors (read on access),
    the dtype its weights are stored in, and the names stored as int8 (with scales)."""

    def __init__(self, config, tensors, dtype: str, weights_path: str):
        self.config, self.tensors, self.dtype, self.weights_path = config, tensors, dtype, weights_path
        expected = [name for name, _ in config.to_core().parameter_shapes()]
        self.names = expected
        self.int8_names = {n for n in expected if tensors.dtype(n) == "I8"}

    def check_int8_names(self, int8_names) -> None:
        """An int8 file stores exactly the matrices an int8 model keeps as int8 (`int8_names`)
        as I8, and everything else (biases, norms, positions) as float."""
        for name in self.names:
            if name in int8_names and name not in self.int8_names:
                raise ValueError(f"{self.weights_path}: tensor {name!r} is stored as {self.tensors.dtype(name)}: "
                                 f"an int8 file stores it as I8 with its scales in {name + SCALE_SUFFIX!r}")
            if name not in int8_names and name in self.int8_names:
                raise ValueError(f"{self.weights_path}: tensor {name!r} is stored as I8, but int8 models keep it "
                                 "in float32")

    def int8(self, name):
        """(q int8, scale float32) of an int8 matrix, as stored; the values checked: q in
        [-127, 127], scales finite and >= 0."""
        q = self.tensors.exact(name, "I8")
        scale = self.tensors.exact(name + SCALE_SUFFIX, "F32")
        bad = np.flatnonzero(~(np.isfinite(scale) & (scale >= 0)))
        if bad.size:
            raise ValueError(f"{self.weights_path}: tensor {name + SCALE_SUFFIX!r} holds {scale[bad[0]]} at row "
                             f"{bad[0]}: scales must be finite and >= 0")
        if q.size and q.min() < -127:
            raise ValueError(f"{self.weights_path}: tensor {name!r} holds -128: int8 weights are in [-127, 127] "
                             "(symmetric quantization)")
        return q, scale


def read_model_dir(path):
    """(config, tensors) of a directory written by write_model_dir (see read_saved_model)."""
    saved = read_saved_model(path)
    return saved.config, saved.tensors


def read_saved_model(path) -> SavedModel:
    """A directory written by write_model_dir: the config checked, the tensors a lazy
    safetensors view whose names, shapes and dtypes match the config and the saved dtype
    (checked on the header before anything is allocated)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory not found: {path}")
    cfg_path = os.path.join(path, "config.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(f"{cfg_path} not found: not a saved tformer model")
    meta = read_json_object(cfg_path)
    if meta.get("format") != FORMAT:
        hint = " (a Hugging Face directory? use tformer.from_huggingface)" if "model_type" in meta else ""
        raise ValueError(f"{cfg_path}: not a tformer model{hint}")
    version = meta.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{cfg_path}: format_version must be an integer, got {version!r}")
    if version > INT8_FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: format version {version} is newer than this tformer reads")
    if not isinstance(meta.get("config"), dict):
        raise ValueError(f"{cfg_path}: expected a 'config' object (the TransformerConfig fields)")
    try:
        config = TransformerConfig.from_dict(meta["config"])
    except (ValueError, TypeError) as e:
        raise located(e, cfg_path) from None
    if "generation" in config.extra:
        check_generation_ids(f"{cfg_path} (extra.generation)", config.extra["generation"], config.tgt_vocab_size)
    weights = os.path.join(path, "model.safetensors")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights} not found")
    dtype = meta.get("dtype", "float32")
    if dtype not in SAVED_DTYPES:
        raise ValueError(f"{cfg_path}: dtype {dtype!r}: expected one of {', '.join(SAVED_DTYPES)}")
    tensors = load_safetensors(weights, lazy=True)
    _check_tensors_match(config, tensors, weights, dtype)
    return SavedModel(config, tensors, dtype, weights)


def _check_tensors_match(config, tensors, weights: str, dtype: str) -> None:
    """Every parameter the config describes is in the file with its shape, before anything
    is allocated from the config (checked on the header: nothing is read). In an int8 file,
    each I8 matrix has its F32 scales, one per row; in a float file nothing is I8."""
    expected = dict(config.to_core().parameter_shapes())
    scales = set()
    for name, shape in expected.items():
        if name not in tensors:
            raise ValueError(f"{weights}: tensor {name!r} missing: config.json describes {len(expected)} tensors, "
                             f"the file has {len(tensors)}")
        if tensors.shape(name) != tuple(shape):
            raise ValueError(f"{weights}: tensor {name!r} has shape {tensors.shape(name)} but the config "
                             f"expects {tuple(shape)}")
        if tensors.dtype(name) != "I8":
            continue
        if dtype != "int8":
            raise ValueError(f"{weights}: tensor {name!r} is stored as I8 but config.json says the weights are "
                             f"{dtype}")
        scale = name + SCALE_SUFFIX
        if scale not in tensors:
            raise ValueError(f"{weights}: int8 tensor {name!r} has no scales: tensor {scale!r} missing")
        if tensors.dtype(scale) != "F32":
            raise ValueError(f"{weights}: tensor {scale!r} is stored as {tensors.dtype(scale)}, expected F32")
        if tensors.shape(scale) != (shape[0],):
            raise ValueError(f"{weights}: tensor {scale!r} has shape {tensors.shape(scale)}, expected "
                             f"({shape[0]},): one scale per row of {name!r}")
        scales.add(scale)
    extra = sorted(set(tensors) - set(expected) - scales)
    if extra:
        base = extra[0][: -len(SCALE_SUFFIX)] if extra[0].endswith(SCALE_SUFFIX) else None
        why = f": scales go with an I8 matrix, and {base!r} is stored as {tensors.dtype(base)}" \
            if base in expected else " for this config"
        raise ValueError(f"{weights}: unexpected tensor {extra[0]!r}{why}")

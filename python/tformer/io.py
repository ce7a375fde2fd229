"""tformer's own format: a directory with config.json (the TransformerConfig, its `extra`
included) and model.safetensors (the parameters under tformer's names). Files are written
to a temporary name, fsynced and renamed (atomic_files), so neither a crash nor a power
loss leaves a half-written model.

Only the file format lives here: this module reads and writes configs and arrays and knows
nothing of the model class (model.py uses it, never the other way round)."""
from __future__ import annotations

import json
import os

from .atomic_files import atomic_write
from .config import TransformerConfig, check_generation_ids, located
from .json_files import read_json_object
from .weights import load_safetensors

FORMAT = "tformer"
FORMAT_VERSION = 1


def write_model_dir(path, config: TransformerConfig, params: dict) -> None:
    """Writes `params` (tformer name -> array) and `config` into directory `path`
    (created if needed)."""
    from safetensors.numpy import save_file

    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    atomic_write(os.path.join(path, "model.safetensors"),
                  lambda tmp: save_file(params, tmp, metadata={"format": FORMAT}))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict()}

    def write_json(tmp):
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=2)

    atomic_write(os.path.join(path, "config.json"), write_json)


def read_model_dir(path):
    """(config, tensors) of a directory written by write_model_dir: the config checked, the
    tensors a lazy safetensors view whose names and shapes match the config (checked on the
    header before anything is allocated)."""
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
    if version > FORMAT_VERSION:
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
    tensors = load_safetensors(weights, lazy=True)
    _check_tensors_match(config, tensors, weights)
    return config, tensors


def _check_tensors_match(config, tensors, weights: str) -> None:
    """Every parameter the config describes is in the file with its shape, before anything
    is allocated from the config (checked on the header: nothing is read)."""
    expected = dict(config.to_core().parameter_shapes())
    for name, shape in expected.items():
        if name not in tensors:
            raise ValueError(f"{weights}: tensor {name!r} missing: config.json describes {len(expected)} tensors, "
                             f"the file has {len(tensors)}")
        if tensors.shape(name) != tuple(shape):
            raise ValueError(f"{weights}: tensor {name!r} has shape {tensors.shape(name)} but the config "
                             f"expects {tuple(shape)}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ValueError(f"{weights}: unexpected tensor {extra[0]!r} for this config")

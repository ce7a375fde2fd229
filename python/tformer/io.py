"""tformer's own format: a directory with config.json (the TransformerConfig) and
model.safetensors (the parameters under tformer's names). Files are written to a
temporary name, fsynced and renamed (atomic_files), so neither a crash nor a power loss
leaves a half-written model."""
from __future__ import annotations

import json
import os

from .atomic_files import atomic_write
from .config import TransformerConfig
from .weights import load_safetensors

FORMAT = "tformer"
FORMAT_VERSION = 1


_atomic_write = atomic_write  # the name Trainer.save imports


def save_model(model, path) -> None:
    from safetensors.numpy import save_file

    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    params = model.parameters()
    _atomic_write(os.path.join(path, "model.safetensors"),
                  lambda tmp: save_file(params, tmp, metadata={"format": FORMAT}))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config.to_dict()}

    def write_json(tmp):
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=2)

    _atomic_write(os.path.join(path, "config.json"), write_json)


def load_model(path, device="cpu", dtype="float32"):
    from .model import Transformer

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory not found: {path}")
    cfg_path = os.path.join(path, "config.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(f"{cfg_path} not found: not a saved tformer model")
    with open(cfg_path) as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_path}: invalid JSON ({e})") from None
    if meta.get("format") != FORMAT:
        hint = " (a Hugging Face directory? use tformer.from_huggingface)" if "model_type" in meta else ""
        raise ValueError(f"{cfg_path}: not a tformer model{hint}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: format version {meta['format_version']} is newer than this tformer reads")
    config = TransformerConfig.from_dict(meta["config"])
    weights = os.path.join(path, "model.safetensors")
    if not os.path.exists(weights):
        raise FileNotFoundError(f"{weights} not found")
    return Transformer._from_parameters(config, load_safetensors(weights, lazy=True), device=device, dtype=dtype)

"""tformer.Transformer: the Python face of the C++ model (tformer._core.Model)."""
from __future__ import annotations

import numpy as np

from . import init as _init
from ._native import _core
from .config import TransformerConfig
from .inputs import prepare_ids


def _canonical_device(device) -> str:
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {type(device).__name__}")
    return _core.check_device(device)  # ValueError for unknown names, RuntimeError without CUDA


def _canonical_dtype(dtype) -> str:
    if not isinstance(dtype, str):
        dtype = getattr(dtype, "__name__", None) or str(dtype)
        dtype = dtype.replace("torch.", "")
    return _core.canonical_dtype(dtype)


class Transformer:
    """An encoder-decoder Transformer running on tformer's C++ core.

    Make a new one (the paper's initialisation), or load one:

        >>> model = tformer.Transformer(tformer.TransformerConfig(src_vocab_size=8000, tgt_vocab_size=8000), seed=0)
        >>> model = tformer.from_huggingface("opus-mt-fr-en")            # a local HF directory
        >>> logits = model.forward([[53, 9, 0]], [[59513, 12]])          # (batch, tgt_len, vocab)
    """

    def __init__(self, config: TransformerConfig, seed: int | None = 0, device: str = "cpu", dtype: str = "float32"):
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a tformer.TransformerConfig, got {type(config).__name__}")
        device = _canonical_device(device)
        dtype = _canonical_dtype(dtype)
        self._config = config
        self._core = _core.Model(config.to_core(), device, dtype)
        if seed is not None:
            for name, value in _init.initial_parameters(config, seed).items():
                self._core.set_parameter(name, value)

    # ------------------------------------------------------------------ construction

    @classmethod
    def _from_parameters(cls, config: TransformerConfig, params: dict, device="cpu", dtype="float32"):
        """A model from a dict of tformer parameter names -> arrays (loaders use this)."""
        model = cls(config, seed=None, device=device, dtype=dtype)
        expected = dict(config.to_core().parameter_shapes())
        for name, value in params.items():
            if name not in expected:
                raise ValueError(f"unexpected tensor {name!r} for this config")
            if tuple(value.shape) != tuple(expected[name]):
                raise ValueError(
                    f"tensor {name!r} has shape {tuple(value.shape)} but the config expects {tuple(expected[name])}"
                )
            model._core.set_parameter(name, value)
        missing = model._core.missing_parameters()
        if missing:
            raise ValueError(f"{len(missing)} tensor(s) missing from the weights, e.g. {missing[:3]}")
        return model

    @classmethod
    def load(cls, path, device: str = "cpu", dtype: str = "float32") -> "Transformer":
        """Loads a model saved with `save` (config.json + model.safetensors)."""
        from .io import load_model

        return load_model(path, device=device, dtype=dtype)

    def save(self, path) -> None:
        """Writes config.json and model.safetensors into directory `path` (created if needed)."""
        from .io import save_model

        save_model(self, path)

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> TransformerConfig:
        return self._config

    @property
    def device(self) -> str:
        return self._core.device

    @property
    def dtype(self) -> str:
        return self._core.dtype

    def to(self, device: str | None = None, dtype: str | None = None) -> "Transformer":
        """This model on another device and/or dtype (a copy; self is unchanged)."""
        device = self.device if device is None else _canonical_device(device)
        dtype = self.dtype if dtype is None else _canonical_dtype(dtype)
        if device == self.device and dtype == self.dtype:
            return self
        other = object.__new__(Transformer)
        other._config = self._config
        other._core = self._core.to(device, dtype)
        return other

    def parameters(self) -> dict:
        """All parameters by tformer name, as float32 numpy arrays (copies on GPU)."""
        return {name: self._core.parameter(name) for name in self._core.parameter_names()}

    def __repr__(self):
        c = self._config
        return (
            f"tformer.Transformer({c.model_type}, d_model={c.d_model}, layers={c.encoder_layers}+{c.decoder_layers}, "
            f"heads={c.encoder_heads}, vocab={c.src_vocab_size}/{c.tgt_vocab_size}, device={self.device}, "
            f"dtype={self.dtype})"
        )

    # ------------------------------------------------------------------ compute

    def encode(self, src_ids) -> np.ndarray:
        """Encoder output, float32 (batch, max_src_len, d_model). Rows past a sentence's end are unspecified."""
        ids, lengths = prepare_ids(src_ids, "src_ids")
        return self._core.encode(ids, lengths)

    def forward(self, src_ids, tgt_ids) -> np.ndarray:
        """Logits, float32 numpy (batch, max_tgt_len, tgt_vocab).

        src_ids: source token ids as the tokenizer gives them (EOS included);
        tgt_ids: decoder input ids exactly as given (decoder start token first).
        Each is a list of token-id lists (lengths may differ; padding is internal)
        or a 2-D integer array. Logits at padded positions are unspecified.
        """
        src, src_len = prepare_ids(src_ids, "src_ids")
        tgt, tgt_len = prepare_ids(tgt_ids, "tgt_ids")
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(
                f"src_ids has {src.shape[0]} sentences but tgt_ids has {tgt.shape[0]}: the batches must have the same size"
            )
        return self._core.forward(src, src_len, tgt, tgt_len)

    __call__ = forward

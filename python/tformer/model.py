"""tformer.Transformer: the Python face of the C++ model (tformer._core.Model)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator, Mapping, Sequence

import numpy as np

from . import init as _init
from . import io as _io
from ._native import _core
from .config import TransformerConfig
from .inputs import prepare_ids

if TYPE_CHECKING:
    import numpy.typing as npt

    from .generate import GenerationResult
    from .types import FloatArray, PathLike, SourceIds, TokenIds


MODEL_DTYPES = ("float32", "float16", "bfloat16", "int8")
INT8_ON_CUDA = ("dtype int8 runs on the CPU only (device='cpu'); on cuda use dtype float32, float16 or "
                "bfloat16")


def _canonical_device(device) -> str:
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {type(device).__name__}")
    return _core.check_device(device)  # ValueError for unknown names, RuntimeError without CUDA


def _canonical_dtype(dtype) -> str:
    if not isinstance(dtype, str):
        dtype = getattr(dtype, "__name__", None) or str(dtype)
        dtype = dtype.replace("torch.", "")
    try:
        name = _core.canonical_dtype(dtype)
    except ValueError:
        name = None
    if name not in MODEL_DTYPES:
        raise ValueError(f"unknown model dtype {dtype!r}: expected one of {', '.join(MODEL_DTYPES)}")
    return name


def _canonical_device_dtype(device, dtype) -> tuple:
    """(device, dtype) checked together: int8 is refused on cuda with a ValueError before
    the device is looked for (a machine without CUDA says the same)."""
    dtype = _canonical_dtype(dtype)
    if dtype == "int8" and isinstance(device, str) and device.strip().lower().startswith("cuda"):
        raise ValueError(INT8_ON_CUDA)
    return _canonical_device(device), dtype


def _int8_parameter_names(config: TransformerConfig) -> set:
    """The parameters an int8 model stores as int8 (a model with no weights allocated)."""
    return set(_core.Model(config.to_core(), "cpu", "int8").int8_parameter_names())


class Transformer:
    """An encoder-decoder Transformer running on tformer's C++ core.

    Make a new one (the paper's initialisation), or load one:

        >>> model = tformer.Transformer(tformer.TransformerConfig(src_vocab_size=8000, tgt_vocab_size=8000), seed=0)
        >>> model = tformer.from_huggingface("opus-mt-fr-en")            # a local HF directory
        >>> logits = model.forward([[53, 9, 0]], [[59513, 12]])          # (batch, tgt_len, vocab)

    Threads: a model may be used from several threads at once. encode, forward, generate,
    generate_stream and parameters() each see one consistent set of weights for the whole
    call; weight updates (set_parameters, Trainer.step's update, Trainer / Trainer.load
    taking the model over) wait for the calls running and hold the next ones back.
    """

    def __init__(self, config: TransformerConfig, seed: int | None = 0, device: str = "cpu",
                 dtype: str = "float32") -> None:
        """A new model: `seed` an int draws the paper's initialisation (None: no weights set,
        for loaders that set every parameter next).

        Raises:
            TypeError: config is not a TransformerConfig, or device is not a string.
            ValueError: an unknown device or dtype, or dtype "int8" on cuda.
            RuntimeError: device "cuda" without a usable CUDA backend.
        """
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a tformer.TransformerConfig, got {type(config).__name__}")
        device, dtype = _canonical_device_dtype(device, dtype)
        self._config = config
        self._core: _core.Model = _core.Model(config.to_core(), device, dtype)
        if seed is not None:
            for name, value in _init.initial_parameters(config, seed).items():
                self._core.set_parameter(name, value)

    # ------------------------------------------------------------------ construction

    @classmethod
    def _from_parameters(cls, config: TransformerConfig, params: dict, device="cpu", dtype="float32"):
        """A model from a dict of tformer parameter names -> arrays, or functions returning
        them (loaders pass functions so that one tensor at a time is in memory)."""
        model = cls(config, seed=None, device=device, dtype=dtype)
        expected = dict(config.to_core().parameter_shapes())
        for name, value in params.items():
            if name not in expected:
                raise ValueError(f"unexpected tensor {name!r} for this config")
            if callable(value):
                value = value()
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
    def load(cls, path: PathLike, device: str = "cpu", dtype: str | None = None) -> "Transformer":
        """Loads a model saved with `save` (config.json + model.safetensors).

        dtype None: the dtype the file was saved in (float32 or int8). A float file loaded
        as int8 is quantized one tensor at a time; an int8 file loaded as a float dtype is
        dequantized (q * scale); an int8 file loaded as int8 gets back the saved bits.

        Raises:
            FileNotFoundError / ValueError: a missing or malformed directory, naming the file.
        """
        saved = _io.read_saved_model(path)
        device, dtype = _canonical_device_dtype(device, saved.dtype if dtype is None else dtype)
        if saved.dtype == "int8":
            saved.check_int8_names(_int8_parameter_names(saved.config))
        model = cls(saved.config, seed=None, device=device, dtype=dtype)
        for name in saved.names:  # one tensor in memory at a time
            if name not in saved.int8_names:
                model._core.set_parameter(name, saved.tensors[name])
            elif dtype == "int8":
                model._core.set_int8_parameters([(name, *saved.int8(name))])
            else:
                model._core.set_parameter(name, _core.ops.dequantize_rows(*saved.int8(name)))
        missing = model._core.missing_parameters()
        if missing:  # pragma: no cover - read_saved_model checked every name
            raise ValueError(f"{len(missing)} tensor(s) missing from the weights, e.g. {missing[:3]}")
        return model

    def save(self, path: PathLike) -> None:
        """Writes config.json and model.safetensors into directory `path` (created if needed).
        An int8 model writes its int8 matrices and their float32 scales as they are (about 4x
        smaller than float32; `load` gives back the same bits), docs/QUANTIZATION.md."""
        if self.dtype != "int8":
            _io.write_model_dir(path, self.config, self.parameters())
            return
        with self._core._reading():  # one consistent set of weights
            int8 = self._core.int8_parameters()
            floats = {name: self._core.parameter(name) for name in self._core.parameter_names() if name not in int8}
        _io.write_model_dir(path, self.config, floats, int8_params=int8)

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> TransformerConfig:
        """The model's architecture."""
        return self._config

    @property
    def device(self) -> str:
        """The device the weights live on: "cpu" or "cuda:N"."""
        return self._core.device

    @property
    def dtype(self) -> str:
        """The weights' dtype: float32, float16, bfloat16 or int8."""
        return self._core.dtype

    def to(self, device: str | None = None, dtype: str | None = None) -> "Transformer":
        """This model on another device and/or dtype (a copy; self is unchanged). dtype
        "int8" (CPU) quantizes the matrices, int8 -> a float dtype dequantizes them."""
        device, dtype = _canonical_device_dtype(self.device if device is None else device,
                                                self.dtype if dtype is None else dtype)
        if device == self.device and dtype == self.dtype:
            return self
        other = object.__new__(Transformer)
        other._config = self._config
        other._core = self._core.to(device, dtype)
        return other

    def parameters(self) -> dict[str, FloatArray]:
        """All parameters by tformer name, as float32 numpy arrays: copies, all taken at one
        moment (a training step or set_parameters in another thread changes none of them).
        An int8 model's matrices come back dequantized (q * scale)."""
        return self._core.parameters()

    def int8_parameters(self) -> dict[str, tuple[npt.NDArray[np.int8], FloatArray]]:
        """An int8 model's int8 matrices by tformer name: {name: (q int8 (rows, cols), scale
        float32 (rows,))}, copies taken at one moment; w ~= q * scale[:, None]."""
        if self.dtype != "int8":
            raise ValueError(f"int8_parameters(): this model is {self.dtype}; convert it with "
                             "model.to(dtype='int8')")
        return self._core.int8_parameters()

    def set_parameters(self, params: Mapping[str, npt.ArrayLike]) -> None:
        """Replaces parameters by tformer name ({name: array}), all at once: a generate,
        forward or encode running in another thread finishes with the old weights (this call
        waits for it) and the next ones see every new value. Names, shapes and values
        (NaN/Inf) are checked first; on an error nothing changes. On an int8 model the
        matrices given are quantized (docs/QUANTIZATION.md)."""
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of parameter name -> array, got {type(params).__name__}")
        values = []
        for name, value in params.items():
            if not isinstance(name, str):
                raise TypeError(f"parameter names must be strings, got {type(name).__name__} {name!r}")
            try:
                array = np.asarray(value)
            except Exception as e:  # objects numpy cannot read, e.g. a tensor on a GPU
                raise TypeError(f"parameter {name!r}: expected an array of numbers, got {type(value).__name__}") from e
            if array.dtype.kind not in "fiu":
                raise TypeError(f"parameter {name!r}: expected an array of numbers, got dtype {array.dtype}")
            values.append((name, array))
        self._core.set_parameters(values)

    def __repr__(self) -> str:
        c = self._config
        return (
            f"tformer.Transformer({c.model_type}, d_model={c.d_model}, layers={c.encoder_layers}+{c.decoder_layers}, "
            f"heads={c.encoder_heads}, vocab={c.src_vocab_size}/{c.tgt_vocab_size}, device={self.device}, "
            f"dtype={self.dtype})"
        )

    # ------------------------------------------------------------------ compute

    def encode(self, src_ids: TokenIds) -> FloatArray:
        """Encoder output, float32 (batch, max_src_len, d_model). Rows past a sentence's end are unspecified."""
        ids, lengths = prepare_ids(src_ids, "src_ids")
        return self._core.encode(ids, lengths)

    def forward(self, src_ids: TokenIds, tgt_ids: TokenIds) -> FloatArray:
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

    def generate(self, src_ids: TokenIds, beam_size: int = 4, max_length: int = 256, min_length: int = 0,
                 length_penalty: float = 1.0, num_hypotheses: int = 1, do_sample: bool = False,
                 sampling_topk: int = 0, sampling_topp: float = 1.0, sampling_temperature: float = 1.0,
                 seed: int | None = None, target_prefix: Sequence[Sequence[int]] | None = None,
                 return_scores: bool = False, return_attention: bool = False,
                 max_batch_size: int = 0, **options: Any) -> list[GenerationResult]:
        """Greedy (beam_size=1), beam search or sampling, with transformers' semantics.

            >>> model.generate([[53, 9, 0]], beam_size=4, max_length=64)[0].tokens[0]

        Args:
            src_ids: source token ids as the tokenizer gives them (EOS included): a list of
                token-id lists (lengths may differ) or a 2-D integer array.
            beam_size: 1 is greedy search (or sampling with do_sample).
            max_length: the most tokens generated per hypothesis (the default is lowered to
                what the model's positions table allows).
            min_length: EOS is forbidden before this many tokens.
            length_penalty: beam scores are divided by length ** length_penalty.
            num_hypotheses: how many hypotheses each result holds (<= beam_size with beam search).
            do_sample: sample the next token instead of taking the best ones.
            sampling_topk: sample among the k most likely tokens (0: all).
            sampling_topp: sample among the smallest set of tokens whose probability reaches p.
            sampling_temperature: logits are divided by it before sampling.
            seed: the random seed of sampling (None: a fresh one each call).
            target_prefix: one list of token ids per source that each hypothesis starts with.
            return_scores: fill each result's `.scores`.
            return_attention: fill each result's `.attention` (cross-attention weights,
                generated length x source length).
            max_batch_size: decode the sources in chunks of this many (0: all at once).
            **options: more of transformers' options, with these defaults:
                early_stopping=False, no_repeat_ngram_size=0, repetition_penalty=1.0,
                renormalize_logits=False, bad_words_ids=None, forced_bos_token_id=None,
                forced_eos_token_id=None (those four: generation_config.json's when the model
                has one), eos_token_id and decoder_start_token_id (the model's),
                pad_token_id=None (the model's pad_id); and cancel=None: a tformer.CancelToken
                (or one per source) that stops the call, or those sources, from another thread
                or at its timeout; their results come back with `.cancelled` True.
                See docs/DECODING.md.

        Returns:
            One GenerationResult per source, in input order: `.tokens` (the n-best list of
            token-id lists, without the start token and the final EOS), `.scores` and
            `.attention` when asked for, `.cancelled`.

        Raises:
            TypeError: an option of the wrong type, or an unknown option.
            ValueError: an option out of range (a token id outside the vocabulary, ...).
        """
        from .generate import generate

        # One shared hold of the weights for every chunk (max_batch_size): all sources are
        # decoded with the same weights even if another thread updates them meanwhile.
        with self._core._reading():
            return generate(self, src_ids, max_batch_size=max_batch_size, beam_size=beam_size,
                            max_length=max_length, min_length=min_length, length_penalty=length_penalty,
                            num_hypotheses=num_hypotheses, do_sample=do_sample, sampling_topk=sampling_topk,
                            sampling_topp=sampling_topp, sampling_temperature=sampling_temperature, seed=seed,
                            target_prefix=target_prefix, return_scores=return_scores,
                            return_attention=return_attention, **options)

    def generate_stream(self, src_ids: SourceIds, **options: Any) -> Generator[int, None, None]:
        """Iterator over the generated token ids of one source, yielded as they are decided
        (greedy or sampling: each token; beam search: the prefix all beams agree on, then the
        rest of the best hypothesis at the end; the final EOS is not yielded).

        src_ids: one source's token ids (a list, or a batch of one). options: generate's,
        except that beam_size defaults to 1 here and max_batch_size is not taken. Closing the
        iterator early stops the decoding.
        """
        from .generate import generate_stream

        return generate_stream(self, src_ids, **options)

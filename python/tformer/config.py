"""TransformerConfig: the architecture, as a plain dataclass that maps 1:1 onto the
C++ `TransformerConfig` (cpp/include/tformer/config.h) plus the token ids and the
positions kind that the Python side needs."""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

from ._native import _core

# Fields copied verbatim into the C++ struct.
_CORE_FIELDS = (
    "src_vocab_size", "tgt_vocab_size", "d_model", "encoder_layers", "decoder_layers",
    "encoder_heads", "decoder_heads", "encoder_ffn_dim", "decoder_ffn_dim", "activation",
    "pre_norm", "encoder_final_norm", "decoder_final_norm", "embed_norm", "embed_scale",
    "max_positions", "position_ids", "position_offset", "pad_id", "shared_embeddings",
    "tied_output", "final_logits_bias", "layer_norm_eps", "rms_norm", "linear_bias", "head_dim",
    "attention_scale", "gated_ffn", "relative_attention_buckets", "relative_attention_max_distance",
    "logits_scale", "padding_row", "final_norm_dropout",
)
_FLOAT_FIELDS = ("embed_scale", "layer_norm_eps", "attention_scale", "logits_scale")

_INT_FIELDS = (
    "src_vocab_size", "tgt_vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_heads",
    "decoder_heads", "encoder_ffn_dim", "decoder_ffn_dim", "max_positions", "position_offset", "pad_id", "eos_id",
    "head_dim", "relative_attention_buckets", "relative_attention_max_distance",
)
_OPTIONAL_INT_FIELDS = ("bos_id", "decoder_start_id")
_BOOL_FIELDS = ("pre_norm", "encoder_final_norm", "decoder_final_norm", "embed_norm", "shared_embeddings",
                "tied_output", "final_logits_bias", "rms_norm", "linear_bias", "gated_ffn",
                "padding_row", "final_norm_dropout")
_STR_FIELDS = ("activation", "positions", "position_ids", "model_type")
_POSITIONS = ("sinusoidal", "sinusoidal_marian", "sinusoidal_fairseq", "learned", "none")
# Ids a decoder feeds to its embedding or compares with its logits: inside the target vocabulary.
_TARGET_IDS = ("pad_id", "eos_id", "bos_id", "decoder_start_id")


def _upper_bounds() -> dict:
    """Each int field's upper bound (the C++ ConfigLimits), so that Python refuses a value
    before pybind would have to squeeze it into an int64."""
    lim = _core.config_limits()
    return {"src_vocab_size": lim["vocab_size"], "tgt_vocab_size": lim["vocab_size"], "d_model": lim["d_model"],
            "encoder_layers": lim["layers"], "decoder_layers": lim["layers"], "encoder_heads": lim["d_model"],
            "decoder_heads": lim["d_model"], "encoder_ffn_dim": lim["ffn_dim"], "decoder_ffn_dim": lim["ffn_dim"],
            "max_positions": lim["max_positions"]}


def _zero_based_bounds() -> dict:
    """The int fields where 0 means "off" or "derived", with their upper bounds."""
    lim = _core.config_limits()
    return {"head_dim": lim["d_model"], "relative_attention_buckets": lim["relative_buckets"],
            "relative_attention_max_distance": lim["max_positions"]}


def is_int(value) -> bool:
    """A JSON/Python integer; True and 32.0 are not."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_token_id(where: str, key: str, value, vocab: int) -> int:
    """value as an int, after checking it is an int in [0, vocab): ValueError naming `where` and `key`."""
    if not is_int(value):
        raise ValueError(f"{where}: {key} must be an integer token id, got {value!r}")
    if not 0 <= value < vocab:
        raise ValueError(f"{where}: {key} {value} is outside the vocabulary [0, {vocab})")
    return value


# Generation settings holding token ids (one, or a list for eos / forced eos).
_GENERATION_IDS = ("forced_bos_token_id", "forced_eos_token_id", "eos_token_id", "decoder_start_token_id",
                   "pad_token_id")


def check_generation_ids(where: str, gen, tgt_vocab_size: int) -> None:
    """The decoding settings of a model directory (generation_config.json, or what a saved
    model keeps in extra["generation"]): each token id inside the target vocabulary."""
    if not isinstance(gen, dict):
        raise ValueError(f"{where}: the generation settings must be an object, got {type(gen).__name__}")
    for key in _GENERATION_IDS:
        value = gen.get(key)
        if value is None:
            continue
        ids = value if isinstance(value, list) and key in ("eos_token_id", "forced_eos_token_id") else [value]
        for v in ids:
            check_token_id(where, key, v, tgt_vocab_size)
    bad = gen.get("bad_words_ids")
    if bad is not None:
        if not isinstance(bad, list) or not all(isinstance(seq, list) for seq in bad):
            raise ValueError(f"{where}: bad_words_ids must be a list of token-id lists, got {bad!r}")
        for seq in bad:
            for v in seq:
                check_token_id(where, "bad_words_ids", v, tgt_vocab_size)


def located(error: Exception, where: str) -> Exception:
    """The same kind of error, its message prefixed by the file it came from."""
    message = str(error)
    message = message[len("config: "):] if message.startswith("config: ") else message
    return type(error)(f"{where}: {message}")


def check_types(cfg) -> None:
    """TypeError for a field of the wrong type (bools are not ints, 32.9 is not an int),
    ValueError for a size beyond its bound or an id outside the target vocabulary; the
    cross-field rules are TransformerConfig::validate's (C++)."""
    for name in _INT_FIELDS + _OPTIONAL_INT_FIELDS:
        value = getattr(cfg, name)
        if value is None and name in _OPTIONAL_INT_FIELDS:
            continue
        if not is_int(value):
            raise TypeError(f"config: {name} must be an int, got {type(value).__name__} {value!r}")
        setattr(cfg, name, int(value))
    for name, high in _upper_bounds().items():
        value = getattr(cfg, name)
        if not 1 <= value <= high:
            raise ValueError(f"config: {name} must be in [1, {high}], got {value}")
    for name, high in _zero_based_bounds().items():
        value = getattr(cfg, name)
        if not 0 <= value <= high:
            raise ValueError(f"config: {name} must be in [0, {high}], got {value}")
    for name in _BOOL_FIELDS:
        value = getattr(cfg, name)
        if not isinstance(value, bool):
            raise TypeError(f"config: {name} must be true or false, got {type(value).__name__} {value!r}")
    for name in _STR_FIELDS:
        value = getattr(cfg, name)
        if not isinstance(value, str):
            raise TypeError(f"config: {name} must be a string, got {type(value).__name__} {value!r}")
    if cfg.positions not in _POSITIONS:
        raise ValueError(f"config: positions must be one of {', '.join(_POSITIONS)}, got {cfg.positions!r}")
    for name in _FLOAT_FIELDS:
        value = getattr(cfg, name)
        if value is None and name == "embed_scale":  # sqrt(d_model), set by __post_init__
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"config: {name} must be a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"config: {name} must be a finite number, got {value!r}")
    if not isinstance(cfg.extra, dict):
        raise TypeError(f"config: extra must be a dict, got {type(cfg.extra).__name__}")
    for name in _TARGET_IDS:
        value = getattr(cfg, name)
        if value is not None and not 0 <= value < cfg.tgt_vocab_size:
            raise ValueError(f"config: {name} must be in [0, tgt_vocab_size = {cfg.tgt_vocab_size}), got {value}")
    if not 0 <= cfg.position_offset < cfg.max_positions:
        raise ValueError(f"config: position_offset must be in [0, max_positions = {cfg.max_positions}), "
                         f"got {cfg.position_offset}")


@dataclass
class TransformerConfig:
    """Architecture of an encoder-decoder Transformer.

    The defaults are the paper's base model (d_model 512, 6+6 layers, 8 heads,
    FFN 2048, ReLU, post-norm, sinusoidal positions, embeddings scaled by sqrt(d_model),
    shared source/target/output embeddings). T5 (tformer.convert.t5) sets rms_norm,
    linear_bias=False, head_dim, attention_scale=1, gated_ffn (v1.1), positions="none",
    relative_attention_buckets and, tied, logits_scale=d_model**-0.5.

    Example:
        >>> cfg = TransformerConfig(src_vocab_size=8000, tgt_vocab_size=8000)
        >>> model = tformer.Transformer(cfg, seed=0)
    """

    src_vocab_size: int = 32000
    tgt_vocab_size: int = 32000
    d_model: int = 512
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_heads: int = 8
    decoder_heads: int = 8
    encoder_ffn_dim: int = 2048
    decoder_ffn_dim: int = 2048
    activation: str = "relu"              # relu, gelu, gelu_tanh, silu
    pre_norm: bool = False                # LayerNorm before each sublayer (mBART, M2M100)
    encoder_final_norm: bool = False      # LayerNorm after the last encoder layer
    decoder_final_norm: bool = False      # LayerNorm after the last decoder layer
    embed_norm: bool = False              # LayerNorm after embeddings + positions (BART)
    embed_scale: float | None = None      # None: sqrt(d_model), as in the paper
    max_positions: int = 1024             # rows of each positions table (positions="none": longest input)
    positions: str = "sinusoidal"         # sinusoidal, sinusoidal_marian, sinusoidal_fairseq, learned
    position_ids: str = "arange"          # arange, or count_non_pad (fairseq/M2M100)
    position_offset: int = 0              # added to every position id (BART's learned table: 2)
    pad_id: int = 0
    bos_id: int | None = None
    eos_id: int = 1
    decoder_start_id: int | None = None   # None: same as bos_id, or eos_id when there is none
    shared_embeddings: bool = True
    tied_output: bool = True
    final_logits_bias: bool = False
    layer_norm_eps: float = 1e-5
    model_type: str = "transformer"       # the family it came from: marian, bart, mbart, m2m_100, t5, ...
    extra: dict = field(default_factory=dict)  # family-specific settings kept for round trips
    # T5-style switches (the defaults are the other families'); positions="none" drops the table.
    rms_norm: bool = False                # RMSNorm (weight only) in place of LayerNorm (T5)
    linear_bias: bool = True              # the layers' Linears have biases (T5: none)
    head_dim: int = 0                     # width of one attention head (T5's d_kv); 0: d_model / heads
    attention_scale: float = 0.0          # attention scores q.k * this; 0: head_dim**-0.5 (T5: 1.0)
    gated_ffn: bool = False               # fc1 (2F, D): act(first F) * second F (T5 v1.1 gated-gelu)
    relative_attention_buckets: int = 0   # T5 relative position bias buckets per stack; 0: none
    relative_attention_max_distance: int = 128  # distances from here on share the last bucket
    logits_scale: float = 1.0             # logits = logits_scale * h @ out_proj^T (tied T5: d_model**-0.5)
    # Training conventions (no effect on inference):
    padding_row: bool = True              # the pad row of the embeddings gets no gradient (T5: False)
    final_norm_dropout: bool = False      # dropout after each stack's final norm (T5: True)

    def __post_init__(self):
        if self.decoder_start_id is None:
            self.decoder_start_id = self.bos_id if self.bos_id is not None else self.eos_id
        check_types(self)
        if self.embed_scale is None:
            self.embed_scale = math.sqrt(self.d_model)
        self.to_core().validate()  # raises ValueError naming a bad field

    def to_core(self):
        """The C++ core's ModelConfig (tformer._core.ModelConfig) of this architecture."""
        core = _core.ModelConfig()
        for name in _CORE_FIELDS:
            value = getattr(self, name)
            if name in _FLOAT_FIELDS:
                value = float(value)
            setattr(core, name, value)  # types and ranges were checked by check_types
        core.position_table = self.positions != "none"
        return core

    def to_dict(self) -> dict:
        """The fields as a plain dict (what config.json of Transformer.save holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        """A config from to_dict's dict.

        Raises:
            TypeError: d is not a dict (or a field has the wrong type).
            ValueError: an unknown field, or a value out of range."""
        if not isinstance(d, dict):
            raise TypeError(f"a TransformerConfig is made from a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TransformerConfig field(s): {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes) -> "TransformerConfig":
        """A copy with the given fields changed (checked as a new config is)."""
        return dataclasses.replace(self, **changes)

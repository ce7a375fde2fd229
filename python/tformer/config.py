"""TransformerConfig: the architecture, as a plain dataclass that maps 1:1 onto the
C++ `TransformerConfig` (cpp/include/tformer/config.h) plus the token ids and the
positions kind that the Python side needs."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ._native import _core

# Fields copied verbatim into the C++ struct.
_CORE_FIELDS = (
    "src_vocab_size", "tgt_vocab_size", "d_model", "encoder_layers", "decoder_layers",
    "encoder_heads", "decoder_heads", "encoder_ffn_dim", "decoder_ffn_dim", "activation",
    "pre_norm", "encoder_final_norm", "decoder_final_norm", "embed_norm", "embed_scale",
    "max_positions", "position_ids", "position_offset", "pad_id", "shared_embeddings",
    "tied_output", "final_logits_bias", "layer_norm_eps",
)


@dataclass
class TransformerConfig:
    """Architecture of an encoder-decoder Transformer.

    The defaults are the paper's base model (d_model 512, 6+6 layers, 8 heads,
    FFN 2048, ReLU, post-norm, sinusoidal positions, embeddings scaled by sqrt(d_model),
    shared source/target/output embeddings).

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
    max_positions: int = 1024             # rows of each positions table
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
    model_type: str = "transformer"       # the family it came from: marian, bart, mbart, m2m_100, ...
    extra: dict = field(default_factory=dict)  # family-specific settings kept for round trips

    def __post_init__(self):
        if self.embed_scale is None:
            self.embed_scale = math.sqrt(self.d_model)
        if self.decoder_start_id is None:
            self.decoder_start_id = self.bos_id if self.bos_id is not None else self.eos_id
        self.to_core().validate()  # raises ValueError naming a bad field

    def to_core(self):
        core = _core.ModelConfig()
        for name in _CORE_FIELDS:
            value = getattr(self, name)
            if name in ("embed_scale", "layer_norm_eps"):
                value = float(value)
            try:
                setattr(core, name, value)
            except TypeError as e:
                raise TypeError(f"TransformerConfig.{name}: bad value {value!r} ({e})") from None
        return core

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TransformerConfig field(s): {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes) -> "TransformerConfig":
        return dataclasses.replace(self, **changes)

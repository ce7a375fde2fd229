"""Hugging Face T5 and mT5 (model_type t5 / mt5: t5-small ... flan-T5, mT5) onto tformer's
TransformerConfig and parameter names.

T5 is pre-norm with RMSNorm (weight only) and final norms on both stacks, no biases, no
position table but a relative position bias per stack (block 0's table, shared by the
stack's layers), unscaled attention (scale 1), heads of width d_kv (num_heads * d_kv may
differ from d_model), one shared embedding, and either the ReLU FFN (v1.0) or a gated one
(v1.1 / flan-T5 / mT5: act(wi_0 x) * wi_1 x, fused here into one fc1). Tied T5 (v1.0)
multiplies the decoder output by d_model**-0.5 before the shared matrix (tformer's
logits_scale); v1.1 has its own lm_head.weight and no factor."""
from __future__ import annotations

import numpy as np

from .._native import _core
from ..config import TransformerConfig, located

T5_TYPES = ("t5", "mt5")

# tformer's layer parts -> (HF sublayer index in an encoder block, in a decoder block, module)
_ATTENTION = {"self_attn": (0, 0, "SelfAttention"), "cross_attn": (None, 1, "EncDecAttention")}
_NORMS = {"self_attn_norm": (0, 0), "cross_attn_norm": (None, 1), "ffn_norm": (1, 2)}


def _feed_forward(fields, where):
    """(gated, activation) of feed_forward_proj, as T5Config reads it: "act" or "gated-act",
    with "gated-gelu" meaning gelu_new (the tanh approximation)."""
    from .huggingface import _activation

    proj = fields.str("feed_forward_proj", "relu")
    parts = proj.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated") or not parts[-1]:
        raise ValueError(f"{where}: feed_forward_proj must be 'ACT' or 'gated-ACT' (e.g. 'relu', 'gated-gelu'), "
                         f"got {proj!r}")
    act = "gelu_new" if proj == "gated-gelu" else parts[-1]
    try:
        return len(parts) == 2, _activation(act)
    except ValueError as e:
        raise ValueError(f"{where}: feed_forward_proj {proj!r}: {e}") from None


def _logits_scale(fields, model_type, d_model):
    """d_model**-0.5 where transformers scales the decoder output: T5 with its output tied
    (scale_decoder_outputs, which transformers 5 writes, else tie_word_embeddings); never mT5."""
    if model_type == "mt5":
        return 1.0
    scaled = fields.hf.get("scale_decoder_outputs")
    if scaled is None:
        scaled = fields.bool("tie_word_embeddings", True)
    elif not isinstance(scaled, bool):
        raise ValueError(f"{fields.where}: scale_decoder_outputs must be true or false, got {scaled!r}")
    return d_model ** -0.5 if scaled else 1.0


def t5_config(fields, model_type: str, where: str, has_lm_head: bool | None = None) -> TransformerConfig:
    """TransformerConfig of a T5/mT5 config.json (fields: huggingface._Fields over it).
    has_lm_head: whether the checkpoint holds its own lm_head.weight (then the output is
    untied, as transformers keeps it); None: from tie_word_embeddings."""
    d = fields.int("d_model")
    vocab = fields.int("vocab_size")
    heads = fields.int("num_heads")
    layers = fields.int("num_layers")
    decoder_layers = fields.int("num_decoder_layers", layers)
    d_kv = fields.int("d_kv")
    d_ff = fields.int("d_ff")
    buckets = fields.int("relative_attention_num_buckets", 32)
    max_distance = fields.int("relative_attention_max_distance", 128)
    eps = fields.hf.get("layer_norm_epsilon", 1e-6)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise ValueError(f"{where}: layer_norm_epsilon must be a number, got {eps!r}")
    for key, value in (("vocab_size", vocab), ("d_model", d), ("num_heads", heads), ("num_layers", layers),
                       ("num_decoder_layers", decoder_layers), ("d_kv", d_kv), ("d_ff", d_ff)):
        if value < 1:
            raise ValueError(f"{where}: {key} must be >= 1, got {value}")
    if buckets < 4:
        raise ValueError(f"{where}: relative_attention_num_buckets must be >= 4, got {buckets}")
    if max_distance <= buckets // 2:
        raise ValueError(f"{where}: relative_attention_max_distance must be > relative_attention_num_buckets / 2 "
                         f"= {buckets // 2}, got {max_distance}")
    gated, activation = _feed_forward(fields, where)
    pad = fields.token_id("pad_token_id", vocab, default=0)
    eos = fields.token_id("eos_token_id", vocab, default=1, allow_list=True)
    start = fields.token_id("decoder_start_token_id", vocab, default=pad)
    tied = not has_lm_head if has_lm_head is not None else fields.bool("tie_word_embeddings", model_type == "t5")
    try:
        return TransformerConfig(
            src_vocab_size=vocab, tgt_vocab_size=vocab, d_model=d, encoder_layers=layers,
            decoder_layers=decoder_layers, encoder_heads=heads, decoder_heads=heads,
            encoder_ffn_dim=d_ff, decoder_ffn_dim=d_ff, activation=activation, gated_ffn=gated,
            pre_norm=True, encoder_final_norm=True, decoder_final_norm=True, rms_norm=True,
            layer_norm_eps=float(eps), linear_bias=False, head_dim=d_kv, attention_scale=1.0,
            embed_scale=1.0, positions="none", max_positions=_core.config_limits()["max_positions"],
            relative_attention_buckets=buckets, relative_attention_max_distance=max_distance,
            pad_id=pad, eos_id=eos, decoder_start_id=start, shared_embeddings=True, tied_output=tied,
            logits_scale=_logits_scale(fields, model_type, d), padding_row=False, final_norm_dropout=True,
            model_type=model_type,
            extra={"hf_config": fields.hf},
        )
    except (ValueError, TypeError) as e:
        raise located(e, where) from None


def check_t5_sizes(cfg: TransformerConfig, state) -> None:
    """The embedding and one relative-bias table against config.json, on the headers."""
    checks = [(("shared.weight", "encoder.embed_tokens.weight"), (cfg.src_vocab_size, cfg.d_model),
               "vocab_size, d_model"),
              (("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",),
               (cfg.relative_attention_buckets, cfg.encoder_heads), "relative_attention_num_buckets, num_heads")]
    for names, expected, fields in checks:
        found = tuple(state.shape(*names))
        if found != expected:
            raise ValueError(f"{state.path}: tensor {names[0]!r} has shape {found} but config.json ({fields}) "
                             f"expects {expected}")


def convert_t5_state(cfg: TransformerConfig, state) -> dict:
    """HF T5 tensors -> tformer parameters (q/k/v, k/v and wi_0/wi_1 fused), one lazy
    reader per name of tformer's parameter table."""
    return {name: _source(cfg, state, name) for name, _shape in cfg.to_core().parameter_shapes()}


def _fused(state, names):
    reads = [state.ref(n) for n in names]
    return lambda: np.concatenate([np.asarray(r(), np.float32) for r in reads], axis=0)


def _source(cfg, state, name):
    if name == "src_embed":
        return state.ref("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
    if name == "out_proj":
        return state.ref("lm_head.weight")
    parts = name.split(".")
    side = parts[0]
    if parts[1] == "relative_attention_bias":
        return state.ref(f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    if parts[1] == "final_norm":
        return state.ref(f"{side}.final_layer_norm.weight")
    # "<side>.layers.<i>.<part>[.<sub>].<kind>"
    block = f"{side}.block.{parts[2]}.layer"
    decoder = side == "decoder"
    part = parts[3]
    if part in _NORMS:
        return state.ref(f"{block}.{_NORMS[part][decoder]}.layer_norm.weight")
    if part in _ATTENTION:
        enc_i, dec_i, module = _ATTENTION[part]
        prefix = f"{block}.{dec_i if decoder else enc_i}.{module}"
        which = parts[4]
        if which == "qkv":
            return _fused(state, [f"{prefix}.{x}.weight" for x in "qkv"])
        if which == "kv":
            return _fused(state, [f"{prefix}.{x}.weight" for x in "kv"])
        return state.ref(f"{prefix}.{'o' if which == 'out' else which}.weight")
    if part == "ffn":
        prefix = f"{block}.{2 if decoder else 1}.DenseReluDense"
        if parts[4] == "fc2":
            return state.ref(f"{prefix}.wo.weight")
        if cfg.gated_ffn:
            return _fused(state, [f"{prefix}.wi_0.weight", f"{prefix}.wi_1.weight"])
        return state.ref(f"{prefix}.wi.weight")
    raise AssertionError(f"no Hugging Face T5 source for tformer parameter {name!r}")  # pragma: no cover

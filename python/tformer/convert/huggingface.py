"""Loading local Hugging Face seq2seq checkpoints: MarianMT (opus-mt), BART, mBART,
M2M100 and NLLB (model_type m2m_100).

The families differ only in switches of TransformerConfig (checked against
transformers' modeling code): Marian is post-norm with Marian-style sinusoids and a
final_logits_bias; BART post-norm with learned positions (offset 2) and an
embedding LayerNorm; mBART pre-norm with final LayerNorms on top of BART; M2M100/NLLB
pre-norm with fairseq sinusoids whose position ids count non-pad tokens."""
from __future__ import annotations

import json
import math
import os

import numpy as np

from ..config import TransformerConfig
from ..positions import make_table
from ..weights import load_checkpoint_dir

SUPPORTED = ("marian", "bart", "mbart", "m2m_100")
_ALIASES = {"nllb": "m2m_100", "m2m100": "m2m_100"}


def read_hf_config(path: str) -> dict:
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory not found: {path}")
    cfg_path = os.path.join(path, "config.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(f"{cfg_path} not found: not a Hugging Face model directory")
    with open(cfg_path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_path}: invalid JSON ({e})") from None


_GENERATION_KEYS = (
    "bad_words_ids", "forced_bos_token_id", "forced_eos_token_id", "eos_token_id", "decoder_start_token_id",
    "pad_token_id", "num_beams", "max_length", "min_length", "length_penalty", "no_repeat_ngram_size",
    "repetition_penalty", "early_stopping", "num_return_sequences", "renormalize_logits",
)


def read_generation_config(path: str, hf: dict) -> dict:
    """Decoding settings as transformers sees them: generation_config.json when the
    directory has one, else the generation keys of config.json (from_model_config)."""
    gen_path = os.path.join(path, "generation_config.json")
    source = hf
    if os.path.exists(gen_path):
        with open(gen_path) as f:
            try:
                source = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{gen_path}: invalid JSON ({e})") from None
    return {k: source[k] for k in _GENERATION_KEYS if source.get(k) is not None}


def config_from_hf(hf: dict) -> TransformerConfig:
    model_type = _ALIASES.get(hf.get("model_type"), hf.get("model_type"))
    if model_type not in SUPPORTED:
        raise ValueError(
            f"unsupported model_type {hf.get('model_type')!r}: tformer loads {', '.join(SUPPORTED)} "
            "(NLLB checkpoints are m2m_100)"
        )
    try:
        d = int(hf["d_model"])
        vocab = int(hf["vocab_size"])
        heads_e, heads_d = int(hf["encoder_attention_heads"]), int(hf["decoder_attention_heads"])
        layers_e, layers_d = int(hf["encoder_layers"]), int(hf["decoder_layers"])
        ffn_e, ffn_d = int(hf["encoder_ffn_dim"]), int(hf["decoder_ffn_dim"])
        max_pos = int(hf.get("max_position_embeddings", 1024))
    except KeyError as e:
        raise ValueError(f"config.json of a {model_type} model lacks {e.args[0]!r}") from None
    pad = int(hf.get("pad_token_id") if hf.get("pad_token_id") is not None else 1)
    tied = bool(hf.get("tie_word_embeddings", True))
    tgt_vocab = vocab
    if model_type == "marian":
        shared = bool(hf.get("share_encoder_decoder_embeddings", True))
        if not shared:
            tgt_vocab = int(hf.get("decoder_vocab_size") or vocab)
    else:
        # BART/mBART/M2M100 tie encoder, decoder and output embeddings to `shared` only
        # when tie_word_embeddings is on; otherwise each keeps its own matrix.
        shared = tied
    common = dict(
        src_vocab_size=vocab, tgt_vocab_size=tgt_vocab, d_model=d,
        encoder_layers=layers_e, decoder_layers=layers_d, encoder_heads=heads_e, decoder_heads=heads_d,
        encoder_ffn_dim=ffn_e, decoder_ffn_dim=ffn_d, activation=_activation(hf.get("activation_function", "gelu")),
        embed_scale=math.sqrt(d) if hf.get("scale_embedding", model_type == "m2m_100") else 1.0,
        pad_id=pad, bos_id=hf.get("bos_token_id"), eos_id=int(hf.get("eos_token_id", 2)),
        decoder_start_id=hf.get("decoder_start_token_id"),
        shared_embeddings=shared, tied_output=tied,
        model_type=model_type, extra={"hf_config": hf},
    )
    if model_type == "marian":
        return TransformerConfig(**common, positions="sinusoidal_marian", max_positions=max_pos,
                                 final_logits_bias=True)
    if model_type == "bart":
        return TransformerConfig(**common, positions="learned", max_positions=max_pos + 2, position_offset=2,
                                 embed_norm=True, final_logits_bias=True)
    if model_type == "mbart":
        return TransformerConfig(**common, positions="learned", max_positions=max_pos + 2, position_offset=2,
                                 embed_norm=True, pre_norm=True, encoder_final_norm=True, decoder_final_norm=True,
                                 final_logits_bias=True)
    return TransformerConfig(**common, positions="sinusoidal_fairseq", max_positions=max_pos + 2,
                             position_ids="count_non_pad", pre_norm=True, encoder_final_norm=True,
                             decoder_final_norm=True)


def _activation(name: str) -> str:
    table = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
             "gelu_pytorch_tanh": "gelu_tanh", "swish": "silu", "silu": "silu"}
    if name not in table:
        raise ValueError(f"unsupported activation_function {name!r}: expected one of {', '.join(table)}")
    return table[name]


class _State:
    """HF tensors by name, with the 'model.' prefix optional and clear errors."""

    def __init__(self, tensors, path: str):
        self.tensors = tensors  # a mapping; safetensors ones read each tensor on access
        self.names = {k[len("model."):] if k.startswith("model.") else k: k for k in tensors}
        self.path = path

    def has(self, name):
        return name in self.names

    def get(self, *names):
        for n in names:
            if n in self.names:
                return self.tensors[self.names[n]]
        raise ValueError(f"{self.path}: tensor {names[0]!r} missing from the weights")

    def ref(self, *names):
        """A function that reads the tensor when called (after checking it exists now)."""
        for n in names:
            if n in self.names:
                return lambda: self.tensors[self.names[n]]
        raise ValueError(f"{self.path}: tensor {names[0]!r} missing from the weights")


def convert_state(cfg: TransformerConfig, state: _State) -> dict:
    """HF tensors -> tformer parameter names (q/k/v fused into one matrix). Values are
    functions that produce the array when called, so the model is filled one tensor at a
    time (peak memory: the model plus one tensor, not two copies of the checkpoint)."""
    p = {}
    if cfg.shared_embeddings:
        p["src_embed"] = state.ref("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
    else:
        p["src_embed"] = state.ref("encoder.embed_tokens.weight", "shared.weight")
        p["tgt_embed"] = state.ref("decoder.embed_tokens.weight", "shared.weight")
    if not cfg.tied_output:
        p["out_proj"] = state.ref("lm_head.weight")
    if cfg.final_logits_bias:
        if state.has("final_logits_bias"):
            read = state.ref("final_logits_bias")
            p["final_logits_bias"] = lambda: np.asarray(read(), np.float32).reshape(-1)
        else:
            p["final_logits_bias"] = np.zeros(cfg.tgt_vocab_size, np.float32)

    for side, rows in (("encoder", "src_positions"), ("decoder", "tgt_positions")):
        table = make_table(cfg.positions, cfg.max_positions, cfg.d_model,
                           padding_idx=cfg.pad_id if cfg.positions == "sinusoidal_fairseq" else None)
        p[rows] = table if table is not None else state.ref(f"{side}.embed_positions.weight")
        if cfg.embed_norm:
            _norm(p, f"{side}.embed_norm", state, f"{side}.layernorm_embedding")
        if (side == "encoder" and cfg.encoder_final_norm) or (side == "decoder" and cfg.decoder_final_norm):
            _norm(p, f"{side}.final_norm", state, f"{side}.layer_norm")

    for i in range(cfg.encoder_layers):
        _layer(p, f"encoder.layers.{i}", state, f"encoder.layers.{i}", cross=False)
    for i in range(cfg.decoder_layers):
        _layer(p, f"decoder.layers.{i}", state, f"decoder.layers.{i}", cross=True)
    return p


def _norm(p, ours, state, theirs):
    p[f"{ours}.gamma"] = state.ref(f"{theirs}.weight")
    p[f"{ours}.beta"] = state.ref(f"{theirs}.bias")


def _linear(p, ours, state, theirs):
    p[f"{ours}.weight"] = state.ref(f"{theirs}.weight")
    p[f"{ours}.bias"] = state.ref(f"{theirs}.bias")


def _fused(p, ours, state, prefix, parts):
    for kind in ("weight", "bias"):
        reads = [state.ref(f"{prefix}.{x}_proj.{kind}") for x in parts]
        p[f"{ours}.{kind}"] = lambda reads=reads: np.concatenate([r() for r in reads], axis=0)


def _layer(p, ours, state, theirs, cross):
    _fused(p, f"{ours}.self_attn.qkv", state, f"{theirs}.self_attn", "qkv")
    _linear(p, f"{ours}.self_attn.out", state, f"{theirs}.self_attn.out_proj")
    _norm(p, f"{ours}.self_attn_norm", state, f"{theirs}.self_attn_layer_norm")
    if cross:
        _linear(p, f"{ours}.cross_attn.q", state, f"{theirs}.encoder_attn.q_proj")
        _fused(p, f"{ours}.cross_attn.kv", state, f"{theirs}.encoder_attn", "kv")
        _linear(p, f"{ours}.cross_attn.out", state, f"{theirs}.encoder_attn.out_proj")
        _norm(p, f"{ours}.cross_attn_norm", state, f"{theirs}.encoder_attn_layer_norm")
    _linear(p, f"{ours}.ffn.fc1", state, f"{theirs}.fc1")
    _linear(p, f"{ours}.ffn.fc2", state, f"{theirs}.fc2")
    _norm(p, f"{ours}.ffn_norm", state, f"{theirs}.final_layer_norm")


def from_huggingface(path, device: str = "cpu", dtype: str = "float32"):
    """Loads a local Hugging Face model directory (config.json + model.safetensors or
    pytorch_model.bin) of a MarianMT, BART, mBART, M2M100 or NLLB checkpoint.

        >>> model = tformer.from_huggingface("/models/opus-mt-fr-en")
        >>> logits = model.forward(src_ids, [[model.config.decoder_start_id] + prefix])
    """
    from ..model import Transformer

    path = os.fspath(path)
    hf = read_hf_config(path)
    cfg = config_from_hf(hf)
    cfg.extra["generation"] = read_generation_config(path, hf)
    state = _State(load_checkpoint_dir(path), path)
    params = convert_state(cfg, state)
    return Transformer._from_parameters(cfg, params, device=device, dtype=dtype)

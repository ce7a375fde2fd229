"""Loading local Hugging Face seq2seq checkpoints: MarianMT (opus-mt), BART, mBART,
M2M100 and NLLB (model_type m2m_100), T5 and mT5 (their mapping: convert/t5.py).

The families differ only in switches of TransformerConfig (checked against
transformers' modeling code): Marian is post-norm with Marian-style sinusoids and a
final_logits_bias; BART post-norm with learned positions (offset 2) and an
embedding LayerNorm; mBART pre-norm with final LayerNorms on top of BART; M2M100/NLLB
pre-norm with fairseq sinusoids whose position ids count non-pad tokens."""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np

from ..config import TransformerConfig, check_generation_ids, check_token_id, is_int, located
from ..generation_config import STORED_KEYS, read_generation_config
from ..json_files import read_json_object
from ..positions import make_table
from ..weights import load_checkpoint_dir, tensor_shape
from .t5 import T5_TYPES, check_t5_sizes, convert_t5_state, t5_config

if TYPE_CHECKING:
    from ..model import Transformer
    from ..types import PathLike

SUPPORTED = ("marian", "bart", "mbart", "m2m_100", "t5", "mt5")
_ALIASES = {"nllb": "m2m_100", "m2m100": "m2m_100"}


def read_hf_config(path: str) -> dict:
    """config.json of a Hugging Face model directory, as a dict (FileNotFoundError / ValueError
    naming the file when it is missing or not a JSON object)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory not found: {path}")
    cfg_path = os.path.join(path, "config.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(f"{cfg_path} not found: not a Hugging Face model directory")
    return read_json_object(cfg_path)


def read_generation_settings(path: str, hf: dict, tgt_vocab_size: int) -> dict:
    """The decoding settings generate applies by itself (STORED_KEYS), each token id among
    them inside the target vocabulary."""
    source, where = read_generation_config(path, hf)
    gen = {k: source[k] for k in STORED_KEYS if source.get(k) is not None}
    check_generation_ids(where, gen, tgt_vocab_size)
    return gen


class _Fields:
    """Typed reads of config.json's values: an int must be a JSON integer (not 32.9, not
    true), a switch a JSON boolean; errors name the file and the key."""

    def __init__(self, hf: dict, where: str):
        self.hf, self.where = hf, where

    def int(self, key, default=None, required=True):
        value = self.hf.get(key)
        value = default if value is None else value  # null reads as absent, as in transformers
        if value is None and required:
            raise ValueError(f"{self.where}: {key!r} is missing (an integer is needed)")
        if value is not None and not is_int(value):
            raise ValueError(f"{self.where}: {key} must be an integer, got {value!r}")
        return value

    def bool(self, key, default):
        value = self.hf.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ValueError(f"{self.where}: {key} must be true or false, got {value!r}")
        return value

    def str(self, key, default):
        value = self.hf.get(key, default)
        if not isinstance(value, str):
            raise ValueError(f"{self.where}: {key} must be a string, got {value!r}")
        return value

    def token_id(self, key, vocab, default=None, allow_list=False):
        """An id inside [0, vocab), or default when absent or null; with allow_list (eos
        ids), a list gives its first id, all of them checked."""
        value = self.hf.get(key)
        value = default if value is None else value
        if value is None:
            return None
        ids = value if allow_list and isinstance(value, list) and value else [value]
        for v in ids:
            check_token_id(self.where, key, v, vocab)
        return ids[0]


def config_from_hf(hf: dict, where: str = "config.json", has_lm_head: bool | None = None) -> TransformerConfig:
    """TransformerConfig of a Hugging Face config.json (where: its path, for messages).
    Every value is type-checked, every special token id range-checked, before anything is
    sized from them. has_lm_head (T5): whether the checkpoint has its own lm_head.weight."""
    if not isinstance(hf, dict):
        raise ValueError(f"{where}: expected a JSON object, got a JSON {type(hf).__name__}")
    f = _Fields(hf, where)
    raw_type = hf.get("model_type")
    model_type = _ALIASES.get(raw_type, raw_type) if isinstance(raw_type, str) else None
    if model_type not in SUPPORTED:
        raise ValueError(
            f"unsupported model_type {raw_type!r}: tformer loads {', '.join(SUPPORTED)} "
            "(NLLB checkpoints are m2m_100)"
        )
    if model_type in T5_TYPES:
        return t5_config(f, model_type, where, has_lm_head)
    d = f.int("d_model")
    vocab = f.int("vocab_size")
    heads_e, heads_d = f.int("encoder_attention_heads"), f.int("decoder_attention_heads")
    layers_e, layers_d = f.int("encoder_layers"), f.int("decoder_layers")
    ffn_e, ffn_d = f.int("encoder_ffn_dim"), f.int("decoder_ffn_dim")
    max_pos = f.int("max_position_embeddings", 1024)
    tied = f.bool("tie_word_embeddings", True)
    tgt_vocab = vocab
    if model_type == "marian":
        shared = f.bool("share_encoder_decoder_embeddings", True)
        if not shared:
            tgt_vocab = f.int("decoder_vocab_size", required=False) or vocab
    else:
        # BART/mBART/M2M100 tie encoder, decoder and output embeddings to `shared` only
        # when tie_word_embeddings is on; otherwise each keeps its own matrix.
        shared = tied
    for key, size in (("vocab_size", vocab), ("decoder_vocab_size", tgt_vocab)):
        if size < 1:
            raise ValueError(f"{where}: {key} must be >= 1, got {size}")
    # Ids index the embeddings: each must lie inside every vocabulary it may meet.
    pad = f.token_id("pad_token_id", min(vocab, tgt_vocab), default=1)
    bos = f.token_id("bos_token_id", tgt_vocab)
    eos = f.token_id("eos_token_id", tgt_vocab, default=2, allow_list=True)
    start = f.token_id("decoder_start_token_id", tgt_vocab)
    f.token_id("forced_bos_token_id", tgt_vocab)
    f.token_id("forced_eos_token_id", tgt_vocab, allow_list=True)
    scale = f.bool("scale_embedding", model_type == "m2m_100")
    common = dict(
        src_vocab_size=vocab, tgt_vocab_size=tgt_vocab, d_model=d,
        encoder_layers=layers_e, decoder_layers=layers_d, encoder_heads=heads_e, decoder_heads=heads_d,
        encoder_ffn_dim=ffn_e, decoder_ffn_dim=ffn_d,
        activation=_activation(f.str("activation_function", "gelu")),
        embed_scale=math.sqrt(d) if scale and d > 0 else 1.0,
        pad_id=pad, bos_id=bos, eos_id=eos, decoder_start_id=start,
        shared_embeddings=shared, tied_output=tied,
        model_type=model_type, extra={"hf_config": hf},
    )
    try:
        if model_type == "marian":
            return TransformerConfig(**common, positions="sinusoidal_marian", max_positions=max_pos,
                                     final_logits_bias=True)
        if model_type == "bart":
            return TransformerConfig(**common, positions="learned", max_positions=max_pos + 2, position_offset=2,
                                     embed_norm=True, final_logits_bias=True)
        if model_type == "mbart":
            return TransformerConfig(**common, positions="learned", max_positions=max_pos + 2, position_offset=2,
                                     embed_norm=True, pre_norm=True, encoder_final_norm=True,
                                     decoder_final_norm=True, final_logits_bias=True)
        return TransformerConfig(**common, positions="sinusoidal_fairseq", max_positions=max_pos + 2,
                                 position_ids="count_non_pad", pre_norm=True, encoder_final_norm=True,
                                 decoder_final_norm=True)
    except (ValueError, TypeError) as e:
        raise located(e, where) from None


def _activation(name: str) -> str:
    table = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
             "gelu_pytorch_tanh": "gelu_tanh", "swish": "silu", "silu": "silu"}
    if not isinstance(name, str) or name not in table:
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

    def shape(self, *names):
        """The stored shape of the first of names present (from the header: nothing is read)."""
        for n in names:
            if n in self.names:
                return tensor_shape(self.tensors, self.names[n])
        raise ValueError(f"{self.path}: tensor {names[0]!r} missing from the weights")

    def ref(self, *names):
        """A function that reads the tensor when called (after checking it exists now)."""
        for n in names:
            if n in self.names:
                return lambda: self.tensors[self.names[n]]
        raise ValueError(f"{self.path}: tensor {names[0]!r} missing from the weights")


def check_sizes_against_weights(cfg: TransformerConfig, state: _State) -> None:
    """The sizes that tables are made from (vocabularies, d_model, positions) must be those
    of the stored embeddings: checked on the headers, before anything is allocated from
    the config (a corrupt max_position_embeddings must not build gigabytes of sinusoids)."""
    checks: list[tuple[tuple[str, ...], tuple[int, int], str]] = []  # (names to try, shape, config fields)
    if cfg.shared_embeddings:
        names: tuple[str, ...] = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
        checks.append((names, (cfg.src_vocab_size, cfg.d_model), "vocab_size, d_model"))
    else:
        checks.append((("encoder.embed_tokens.weight", "shared.weight"), (cfg.src_vocab_size, cfg.d_model),
                       "vocab_size, d_model"))
        checks.append((("decoder.embed_tokens.weight", "shared.weight"), (cfg.tgt_vocab_size, cfg.d_model),
                       "decoder_vocab_size, d_model"))
    if cfg.positions == "learned":
        for side in ("encoder", "decoder"):
            checks.append(((f"{side}.embed_positions.weight",), (cfg.max_positions, cfg.d_model),
                           "max_position_embeddings + 2, d_model"))
    for names, expected, fields in checks:
        found = state.shape(*names)
        if tuple(found) != expected:
            name = state.names[next(n for n in names if state.has(n))]  # as stored
            raise ValueError(f"{state.path}: tensor {name!r} has shape {tuple(found)} but config.json ({fields}) "
                             f"expects {expected}")


def convert_state(cfg: TransformerConfig, state: _State) -> dict:
    """HF tensors -> tformer parameters (q/k/v fused into one matrix), for every name of
    tformer's parameter table (parameter_shapes(), declared once in C++): this module maps
    HF names only. Values are functions that produce the array when called, so the model is
    filled one tensor at a time (peak memory: the model plus one tensor, not two copies of
    the checkpoint); a tensor missing from the checkpoint is an error here already."""
    return {name: _source(cfg, state, name) for name, _shape in cfg.to_core().parameter_shapes()}


# Where each part of a tformer layer comes from in a BART-like HF layer.
_LAYER_LINEARS = {"self_attn.out": "self_attn.out_proj", "cross_attn.q": "encoder_attn.q_proj",
                  "cross_attn.out": "encoder_attn.out_proj", "ffn.fc1": "fc1", "ffn.fc2": "fc2"}
_LAYER_FUSED = {"self_attn.qkv": ("self_attn", "qkv"), "cross_attn.kv": ("encoder_attn", "kv")}
_NORMS = {"self_attn_norm": "self_attn_layer_norm", "cross_attn_norm": "encoder_attn_layer_norm",
          "ffn_norm": "final_layer_norm", "embed_norm": "layernorm_embedding", "final_norm": "layer_norm"}
_NORM_KINDS = {"gamma": "weight", "beta": "bias"}


def _source(cfg, state, name):
    if name == "src_embed":
        if cfg.shared_embeddings:
            return state.ref("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
        return state.ref("encoder.embed_tokens.weight", "shared.weight")
    if name == "tgt_embed":
        return state.ref("decoder.embed_tokens.weight", "shared.weight")
    if name == "out_proj":
        return state.ref("lm_head.weight")
    if name == "final_logits_bias":
        if state.has("final_logits_bias"):
            read = state.ref("final_logits_bias")
            return lambda: np.asarray(read(), np.float32).reshape(-1)
        return lambda: np.zeros(cfg.tgt_vocab_size, np.float32)
    if name in ("src_positions", "tgt_positions"):
        if cfg.positions == "learned":
            return state.ref(f"{'encoder' if name == 'src_positions' else 'decoder'}.embed_positions.weight")
        # computed when the model is filled, after the weights' shapes were checked
        pad = cfg.pad_id if cfg.positions == "sinusoidal_fairseq" else None
        return lambda: make_table(cfg.positions, cfg.max_positions, cfg.d_model, padding_idx=pad)
    # "<side>.<norm>.<kind>" or "<side>.layers.<i>.<part>.<kind>"
    parts = name.split(".")
    side, kind = parts[0], parts[-1]
    theirs, part = side, ".".join(parts[1:-1])
    if parts[1] == "layers":
        theirs, part = f"{side}.layers.{parts[2]}", ".".join(parts[3:-1])
    if part in _NORMS and kind in _NORM_KINDS:
        return state.ref(f"{theirs}.{_NORMS[part]}.{_NORM_KINDS[kind]}")
    if part in _LAYER_LINEARS:
        return state.ref(f"{theirs}.{_LAYER_LINEARS[part]}.{kind}")
    if part in _LAYER_FUSED:
        module, pieces = _LAYER_FUSED[part]
        reads = [state.ref(f"{theirs}.{module}.{x}_proj.{kind}") for x in pieces]
        return lambda: np.concatenate([r() for r in reads], axis=0)
    raise AssertionError(f"no Hugging Face source for tformer parameter {name!r}")  # pragma: no cover


def from_huggingface(path: PathLike, device: str = "cpu", dtype: str = "float32", *,
                     revision: str | None = None) -> Transformer:
    """Loads a local Hugging Face model directory (config.json + model.safetensors or
    pytorch_model.bin) of a MarianMT, BART, mBART, M2M100, NLLB, T5 or mT5 checkpoint.
    Where no such directory exists, `path` may be a Hugging Face Hub model id, fetched into
    the Hugging Face cache with huggingface_hub (tformer[hub]; `revision`: a branch, tag or
    commit; tformer.hub.resolve_model_dir).
    dtype "int8" (CPU): each matrix is quantized as it is read (one float tensor in memory
    at a time), the same bits as loading in float32 then `.to(dtype="int8")`.

        >>> model = tformer.from_huggingface("/models/opus-mt-fr-en")
        >>> model = tformer.from_huggingface("Helsinki-NLP/opus-mt-fr-en")   # from the Hub
        >>> logits = model.forward(src_ids, [[model.config.decoder_start_id] + prefix])
    """
    from ..hub import resolve_model_dir
    from ..model import Transformer

    path = resolve_model_dir(path, revision=revision)
    hf = read_hf_config(path)
    cfg = config_from_hf(hf, os.path.join(path, "config.json"))
    cfg.extra["generation"] = read_generation_settings(path, hf, cfg.tgt_vocab_size)
    state = _State(load_checkpoint_dir(path), path)
    if cfg.model_type in T5_TYPES:
        # transformers keeps a stored lm_head.weight as the output matrix, else ties it to shared
        cfg = cfg.replace(tied_output=not state.has("lm_head.weight"))
        check_t5_sizes(cfg, state)
        params = convert_t5_state(cfg, state)
    else:
        check_sizes_against_weights(cfg, state)
        params = convert_state(cfg, state)
    return Transformer._from_parameters(cfg, params, device=device, dtype=dtype)

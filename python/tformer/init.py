"""Initial parameters of a new model, after the paper's setup as commonly implemented
(fairseq, tensor2tensor): Xavier-uniform matrices, zero biases, unit LayerNorm gains,
embeddings N(0, d_model^-0.5), fixed sinusoidal positions; T5's relative attention bias
tables N(0, d_model^-0.5) as transformers initialises them."""
from __future__ import annotations

import numpy as np

from .positions import make_table


def initial_parameters(config, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    d = config.d_model
    params = {}
    for name, shape in config.to_core().parameter_shapes():
        shape = tuple(shape)
        if name in ("src_positions", "tgt_positions"):
            table = make_table(config.positions, shape[0], d, padding_idx=config.pad_id
                               if config.positions == "sinusoidal_fairseq" else None)
            params[name] = table if table is not None else rng.normal(0.0, 0.02, shape).astype(np.float32)
        elif name in ("src_embed", "tgt_embed", "out_proj"):
            table = rng.normal(0.0, d ** -0.5, shape).astype(np.float32)
            if name != "out_proj" and 0 <= config.pad_id < shape[0]:
                table[config.pad_id] = 0.0
            params[name] = table
        elif name.endswith(".relative_attention_bias"):
            params[name] = rng.normal(0.0, d ** -0.5, shape).astype(np.float32)
        elif name.endswith(".gamma"):
            params[name] = np.ones(shape, np.float32)
        elif name.endswith(".beta") or name.endswith(".bias") or name == "final_logits_bias":
            params[name] = np.zeros(shape, np.float32)
        elif name.endswith(".weight"):
            params[name] = _xavier_uniform(rng, name, shape, config.gated_ffn)
        else:  # pragma: no cover - every parameter kind is listed above
            raise AssertionError(f"no initialiser for {name}")
    return params


def _xavier_uniform(rng, name, shape, gated_ffn):
    # Fused matrices are initialised as the separate blocks they hold: q/k/v (3), k/v (2),
    # a gated FFN's two input projections (2).
    fan_out, fan_in = shape
    blocks = 3 if ".qkv." in name else 2 if (".kv." in name or (gated_ffn and ".fc1." in name)) else 1
    block = fan_out // blocks
    limit = np.sqrt(6.0 / (fan_in + block))
    return rng.uniform(-limit, limit, shape).astype(np.float32)

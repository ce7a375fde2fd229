"""A model directory's decoding settings: the one reader of generation_config.json.

Hugging Face keeps them in generation_config.json, or (older checkpoints) among the keys of
config.json; transformers' generate reads them from there. tformer uses them twice:
from_huggingface keeps the ones `generate` applies by itself (token ids, banned words) in
config.extra["generation"], and Translator turns the search settings (beams, lengths,
sampling) into its default generate options.
"""
from __future__ import annotations

import os

from .json_files import read_json_object
from .option_checks import integer

# Kept in config.extra["generation"] by from_huggingface (and saved with the model).
STORED_KEYS = (
    "bad_words_ids", "forced_bos_token_id", "forced_eos_token_id", "eos_token_id", "decoder_start_token_id",
    "pad_token_id", "num_beams", "max_length", "min_length", "length_penalty", "no_repeat_ngram_size",
    "repetition_penalty", "early_stopping", "num_return_sequences", "renormalize_logits",
)

# generation_config.json key -> generate option; max/min length are handled apart because
# transformers counts the decoder start token in them and generate does not.
_OPTION_KEYS = {
    "num_beams": "beam_size",
    "length_penalty": "length_penalty",
    "no_repeat_ngram_size": "no_repeat_ngram_size",
    "repetition_penalty": "repetition_penalty",
    "num_return_sequences": "num_hypotheses",
    "do_sample": "do_sample",
    "top_k": "sampling_topk",
    "top_p": "sampling_topp",
    "temperature": "sampling_temperature",
}


def read_generation_config(path, hf: dict | None = None) -> tuple[dict, str]:
    """(settings, file): generation_config.json when the directory has one, else config.json
    (`hf`, when the caller has read it already), as transformers' from_model_config does; ({},
    "") when the directory has neither."""
    path = os.fspath(path)
    gen_path = os.path.join(path, "generation_config.json")
    if os.path.exists(gen_path):
        return read_json_object(gen_path), gen_path
    cfg_path = os.path.join(path, "config.json")
    if hf is not None:
        return hf, cfg_path
    if os.path.isfile(cfg_path):
        return read_json_object(cfg_path), cfg_path
    return {}, ""


def model_generation_settings(config) -> dict:
    """The settings from_huggingface kept in the model's config (STORED_KEYS)."""
    return dict(config.extra.get("generation", {}))


def generation_defaults(path, max_positions=None) -> dict:
    """generate options from a Hugging Face directory's generation_config.json (or, when it
    is absent, the same keys of config.json), as transformers' generate would use them.
    Only keys the directory sets are returned; bad_words_ids and forced BOS/EOS are read by
    generate itself (model_generation_settings)."""
    cfg, source = read_generation_config(path)
    out = {}
    for key, option in _OPTION_KEYS.items():
        if cfg.get(key) is not None:
            out[option] = cfg[key]
    if isinstance(cfg.get("early_stopping"), bool):  # "never" has no generate equivalent
        out["early_stopping"] = cfg["early_stopping"]
    if out.get("do_sample") and "sampling_topk" not in out:
        out["sampling_topk"] = 50  # transformers' default top_k whenever it samples
    # transformers' max_length / min_length count the decoder start token; the *_new_tokens
    # variants (which win over them) and generate's options do not.
    def length(key, minimum):  # generate's integer rule, the file named in the error
        try:
            return integer(key, cfg[key], minimum)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{source}: {e}") from None

    if cfg.get("max_new_tokens") is not None:
        out["max_length"] = length("max_new_tokens", 1)
    elif cfg.get("max_length") is not None:
        out["max_length"] = max(1, length("max_length", 0) - 1)
        if max_positions:
            out["max_length"] = min(out["max_length"], max_positions - 1)
    if cfg.get("min_new_tokens") is not None:
        out["min_length"] = length("min_new_tokens", 0)
    elif cfg.get("min_length"):
        out["min_length"] = max(0, length("min_length", 0) - 1)
    if "min_length" in out and "max_length" in out:
        out["min_length"] = min(out["min_length"], out["max_length"])
    return out

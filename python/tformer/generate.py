"""model.generate / model.generate_stream: argument conversion around the C++ search
(cpp/decoding/). Sources are sorted by length and split by max_batch_size here;
everything else (search, processors, KV cache) runs in C++ with the GIL released."""
from __future__ import annotations

import numbers
import queue
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._native import _core
from .generation_config import model_generation_settings
from .inputs import prepare_ids
from .option_checks import flag, integer, real, token_id, token_lists, UINT64_MAX, is_integer


@dataclass
class GenerationResult:
    """One source's n-best list: token ids (no start token, no final EOS), and when asked
    for, scores and cross-attention weights (generated length x source length).
    `cancelled`: its CancelToken stopped it; tokens and scores are what it had so far."""

    tokens: list[list[int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    attention: list[Any] = field(default_factory=list)
    cancelled: bool = False


DEFAULT_MAX_LENGTH = 256


def positions_left(config) -> int:
    """How many tokens the target positions table lets the decoder generate."""
    first = config.position_offset if config.position_ids == "arange" else config.pad_id + 1
    return config.max_positions - first


def _unset(token):
    """None or -1: the documented "not set" of the token-id options that have a default."""
    return token is None or (is_integer(token) and int(token) == -1)


def build_options(model, batch: int, **kw) -> "_core.GenerationOptions":
    """Each option checked in Python (type, and range of its C++ type or of the vocabulary)
    before pybind converts it; the rules that tie options together stay in C++'s validate."""
    cfg = model.config
    vocab = cfg.tgt_vocab_size
    gen = model_generation_settings(cfg)
    o = _core.GenerationOptions()
    o.beam_size = integer("beam_size", kw.pop("beam_size", 4), 1, _core.MAX_BEAM_SIZE)
    max_length = kw.pop("max_length", DEFAULT_MAX_LENGTH)
    if type(max_length) is int and max_length == DEFAULT_MAX_LENGTH:
        # The default, not a request: a model with a shorter positions table gets what it allows.
        max_length = min(DEFAULT_MAX_LENGTH, positions_left(cfg))
    o.max_length = integer("max_length", max_length, 1)
    o.min_length = integer("min_length", kw.pop("min_length", 0), 0)
    o.length_penalty = real("length_penalty", kw.pop("length_penalty", 1.0))
    o.num_hypotheses = integer("num_hypotheses", kw.pop("num_hypotheses", 1), 1)
    o.early_stopping = flag("early_stopping", kw.pop("early_stopping", False))
    o.do_sample = flag("do_sample", kw.pop("do_sample", False))
    o.sampling_topk = integer("sampling_topk", kw.pop("sampling_topk", 0), 0)
    o.sampling_topp = real("sampling_topp", kw.pop("sampling_topp", 1.0))
    o.sampling_temperature = real("sampling_temperature", kw.pop("sampling_temperature", 1.0))
    seed = kw.pop("seed", None)
    o.seed = random.getrandbits(63) if seed is None else integer("seed", seed, 0, UINT64_MAX)
    prefix = kw.pop("target_prefix", None)
    if prefix is not None:
        prefix = token_lists("target_prefix", prefix, vocab)
        if len(prefix) != batch:
            raise ValueError(f"target_prefix has {len(prefix)} entries for {batch} sources: give one list per source")
        o.target_prefix = prefix
    o.no_repeat_ngram_size = integer("no_repeat_ngram_size", kw.pop("no_repeat_ngram_size", 0), 0)
    o.repetition_penalty = real("repetition_penalty", kw.pop("repetition_penalty", 1.0))
    o.renormalize_logits = flag("renormalize_logits", kw.pop("renormalize_logits", gen.get("renormalize_logits", False)))
    bad = kw.pop("bad_words_ids", gen.get("bad_words_ids"))
    o.bad_words_ids = [] if bad is None else token_lists("bad_words_ids", bad, vocab)
    for key in ("forced_bos_token_id", "forced_eos_token_id"):
        value = kw.pop(key, gen.get(key))
        # None or -1: no forced token.
        setattr(o, key, -1 if _unset(value) else token_id(key, value, vocab, unset="none"))
    eos = kw.pop("eos_token_id", gen.get("eos_token_id", cfg.eos_id))
    if isinstance(eos, (list, tuple)):
        if not eos:
            raise ValueError("eos_token_id: at least one end-of-sentence id is needed")
        o.eos_token_ids = [token_id("eos_token_id", e, vocab) for e in eos]
    else:
        o.eos_token_ids = [token_id("eos_token_id", eos, vocab)]
    start = kw.pop("decoder_start_token_id", gen.get("decoder_start_token_id", cfg.decoder_start_id))
    o.decoder_start_token_id = token_id("decoder_start_token_id", start, vocab)
    # None or -1: the model's pad id (C++ checks that one against the vocabulary too).
    pad = kw.pop("pad_token_id", None)
    o.pad_token_id = -1 if _unset(pad) else token_id("pad_token_id", pad, vocab, unset="the model's pad_id")
    o.return_scores = flag("return_scores", kw.pop("return_scores", False))
    o.return_attention = flag("return_attention", kw.pop("return_attention", False))
    if kw:
        raise TypeError(f"generate() got unexpected option(s): {', '.join(sorted(kw))}")
    return o


def cancel_tokens(cancel, batch: int):
    """generate's `cancel=`: None, one tformer.CancelToken (the whole call) or a list of one
    per source -> a list of tokens per source (or None)."""
    if cancel is None:
        return None
    if isinstance(cancel, _core.CancelToken):
        return [cancel] * batch
    if isinstance(cancel, (list, tuple)):
        if len(cancel) != batch:
            raise ValueError(f"cancel has {len(cancel)} tokens for {batch} sources: give one tformer.CancelToken "
                             "or one per source")
        for i, token in enumerate(cancel):
            if not isinstance(token, _core.CancelToken):
                raise TypeError(f"cancel[{i}] must be a tformer.CancelToken, got {type(token).__name__}")
        return list(cancel)
    raise TypeError(f"cancel must be a tformer.CancelToken or a list of them, got {type(cancel).__name__}")


def generate(model, src_ids, max_batch_size: int = 0, cancel=None, **options) -> list:
    """Transformer.generate's work (see its docstring): sources sorted by length, decoded in
    chunks of max_batch_size, results in input order."""
    ids, lengths = prepare_ids(src_ids, "src_ids")
    max_batch_size = integer("max_batch_size", max_batch_size, 0)
    batch = ids.shape[0]
    tokens = cancel_tokens(cancel, batch)
    opts = build_options(model, batch, **options)
    prefix = list(opts.target_prefix)
    # Longest first, then in chunks: less padding, and results come back in input order.
    order = sorted(range(batch), key=lambda i: -lengths[i])
    chunk = max_batch_size or batch
    results: list[GenerationResult | None] = [None] * batch  # each filled by its chunk
    for start in range(0, batch, chunk):
        idx = order[start:start + chunk]
        width = max(lengths[i] for i in idx)
        sub = np.ascontiguousarray(ids[idx, :width])
        opts.sample_ids = idx  # each source keeps its own random stream, whatever the batching
        if prefix:
            opts.target_prefix = [prefix[i] for i in idx]
        if tokens is not None:
            opts.set_cancel([tokens[i] for i in idx])
        for i, r in zip(idx, model._core.generate(sub, [lengths[i] for i in idx], opts)):
            results[i] = GenerationResult(tokens=[list(t) for t in r.tokens], scores=list(r.scores),
                                          attention=list(r.attention), cancelled=r.cancelled)
    return results


def generate_stream(model, src_ids, cancel=None, **options):
    """Yields the generated token ids of one source as they are decided (a cancelled one
    stops early); with beam search, the prefix every beam agrees on as it grows, then the rest
    of the best hypothesis."""
    if isinstance(src_ids, (list, tuple)) and src_ids and isinstance(src_ids[0], numbers.Integral):
        src_ids = [list(src_ids)]
    ids, lengths = prepare_ids(src_ids, "src_ids")
    if ids.shape[0] != 1:
        raise ValueError(f"src_ids: generate_stream takes one source, got {ids.shape[0]}")
    # Greedy and sampling stream every token as decided; beam search the tokens all live beams
    # (and kept hypotheses) agree on, then the rest of the best hypothesis at the end.
    options["beam_size"] = integer("beam_size", options.get("beam_size", 1), 1, _core.MAX_BEAM_SIZE)
    cancel = cancel_tokens(cancel, 1)
    opts = build_options(model, 1, **options)
    own = None
    if cancel is None:  # ours: a consumer that stops iterating stops the decoding
        own = _core.CancelToken()
        cancel = [own]
    opts.set_cancel(cancel)
    tokens: queue.Queue = queue.Queue()
    done = object()
    opts.set_on_token(lambda source, token: tokens.put(token))
    errors = []

    def run():
        try:
            model._core.generate(ids, lengths, opts)
        except BaseException as e:  # handed to the consumer
            errors.append(e)
        finally:
            tokens.put(done)

    worker = threading.Thread(target=run, daemon=True, name="tformer-generate-stream")
    worker.start()
    try:
        while True:
            item = tokens.get()
            if item is done:
                break
            yield item
    finally:  # also when the consumer closes the iterator early
        if own is not None:
            own.cancel()
    worker.join()
    if errors:
        raise errors[0]

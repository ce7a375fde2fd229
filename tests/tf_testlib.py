"""Shared helpers for the tformer test suite: tiny Hugging Face reference models, token
batches and comparison helpers. Nothing here calls tformer; every expected value in the
suite comes from float64 NumPy, PyTorch or Hugging Face transformers."""

import contextlib
import subprocess
import warnings

import numpy as np
import torch

# transformers 5.x prints progress bars and may emit deprecation warnings while building,
# saving and loading models. The project runs pytest with filterwarnings=error, so the
# reference side is run with warnings silenced: they are not what we test.


# A script for a fresh interpreter (the CUDA backend is loaded once per process): move a tiny
# model to "cuda" and print "RuntimeError: <message>" or "no error". Tests append their prints.
ASK_FOR_CUDA = """
import tformer
cfg = tformer.TransformerConfig(src_vocab_size=30, tgt_vocab_size=30, d_model=16, encoder_layers=1,
                                decoder_layers=1, encoder_heads=2, decoder_heads=2,
                                encoder_ffn_dim=32, decoder_ffn_dim=32)
try:
    tformer.Transformer(cfg, seed=0).to("cuda")
except RuntimeError as e:
    print("RuntimeError:", e)
else:
    print("no error")
"""


# model.device for each value of the `device` fixture
EXPECTED_DEVICE_STRING = {"cpu": "cpu", "cuda": "cuda:0"}


@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------------------
# Model zoo. Each spec: family (HF model_type), HF config kwargs, and the token ids the
# tests need (pad, eos, decoder start). Sizes are tiny on purpose (d_model 16..64,
# vocab 50..300) and chosen to hit awkward shapes: odd head counts, odd and unequal
# layer counts, unequal FFN sizes, a single head, a head_dim that is not a multiple of 8.
# --------------------------------------------------------------------------------------

_COMMON = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
               encoder_layerdrop=0.0, decoder_layerdrop=0.0)

MODEL_SPECS = {
    # opus-mt style: swish, sinusoidal positions, scaled embeddings, one shared matrix
    # for source embeddings, target embeddings and the output projection.
    "marian": dict(
        family="marian",
        config=dict(vocab_size=97, d_model=36, encoder_layers=2, decoder_layers=3,
                    encoder_attention_heads=3, decoder_attention_heads=3,
                    encoder_ffn_dim=64, decoder_ffn_dim=48, max_position_embeddings=40,
                    activation_function="swish", scale_embedding=True,
                    pad_token_id=96, eos_token_id=0, decoder_start_token_id=96,
                    forced_eos_token_id=0, **_COMMON),
        pad=96, eos=0, start=96),
    # Marian with separate source / target vocabularies (decoder_vocab_size differs).
    "marian_untied": dict(
        family="marian",
        config=dict(vocab_size=80, decoder_vocab_size=120,
                    share_encoder_decoder_embeddings=False,
                    d_model=32, encoder_layers=1, decoder_layers=2,
                    encoder_attention_heads=4, decoder_attention_heads=2,
                    encoder_ffn_dim=40, decoder_ffn_dim=72, max_position_embeddings=48,
                    activation_function="swish", scale_embedding=True,
                    pad_token_id=79, eos_token_id=0, decoder_start_token_id=79,
                    forced_eos_token_id=0, **_COMMON),
        pad=79, eos=0, start=79),
    # BART: gelu (erf), learned positions (offset 2), layernorm_embedding, post-norm.
    "bart": dict(
        family="bart",
        config=dict(vocab_size=150, d_model=40, encoder_layers=3, decoder_layers=1,
                    encoder_attention_heads=5, decoder_attention_heads=5,
                    encoder_ffn_dim=72, decoder_ffn_dim=56, max_position_embeddings=48,
                    activation_function="gelu", scale_embedding=False,
                    pad_token_id=1, bos_token_id=0, eos_token_id=2,
                    decoder_start_token_id=2, forced_eos_token_id=2, **_COMMON),
        pad=1, eos=2, start=2),
    # BART with untied embeddings: with tie_word_embeddings=False transformers 5 keeps
    # model.encoder.embed_tokens, model.decoder.embed_tokens and lm_head as separate
    # matrices (model.shared is then unused); all three get different random values.
    "bart_untied": dict(
        family="bart",
        config=dict(vocab_size=70, d_model=24, encoder_layers=1, decoder_layers=2,
                    encoder_attention_heads=3, decoder_attention_heads=2,
                    encoder_ffn_dim=36, decoder_ffn_dim=20, max_position_embeddings=32,
                    activation_function="gelu", scale_embedding=False,
                    tie_word_embeddings=False,
                    pad_token_id=1, bos_token_id=0, eos_token_id=2,
                    decoder_start_token_id=2, forced_eos_token_id=2, **_COMMON),
        pad=1, eos=2, start=2),
    # mBART: pre-norm, final encoder/decoder layer norms, layernorm_embedding, learned
    # positions, scaled embeddings (as in mbart-large-cc25).
    "mbart": dict(
        family="mbart",
        config=dict(vocab_size=120, d_model=48, encoder_layers=2, decoder_layers=2,
                    encoder_attention_heads=4, decoder_attention_heads=6,
                    encoder_ffn_dim=96, decoder_ffn_dim=80, max_position_embeddings=40,
                    activation_function="gelu", scale_embedding=True,
                    pad_token_id=1, bos_token_id=0, eos_token_id=2,
                    decoder_start_token_id=2, forced_eos_token_id=2, **_COMMON),
        pad=1, eos=2, start=2),
    # M2M100 / NLLB: relu, fairseq sinusoidal positions (offset padding_idx + 1),
    # scaled embeddings, pre-norm with final layer norms, no final_logits_bias.
    "m2m_100": dict(
        family="m2m_100",
        config=dict(vocab_size=130, d_model=40, encoder_layers=1, decoder_layers=3,
                    encoder_attention_heads=5, decoder_attention_heads=5,
                    encoder_ffn_dim=64, decoder_ffn_dim=88, max_position_embeddings=64,
                    activation_function="relu", scale_embedding=True,
                    pad_token_id=1, bos_token_id=0, eos_token_id=2,
                    decoder_start_token_id=2, **_COMMON),
        pad=1, eos=2, start=2),
    # NLLB-like m2m_100: a single 52-wide encoder head, 4 decoder heads of width 13
    # (not a multiple of 8), vocabulary larger than d_model * 4.
    "m2m_100_wide": dict(
        family="m2m_100",
        config=dict(vocab_size=260, d_model=52, encoder_layers=2, decoder_layers=1,
                    encoder_attention_heads=1, decoder_attention_heads=4,
                    encoder_ffn_dim=104, decoder_ffn_dim=60, max_position_embeddings=64,
                    activation_function="relu", scale_embedding=True,
                    pad_token_id=1, bos_token_id=0, eos_token_id=2,
                    decoder_start_token_id=2, **_COMMON),
        pad=1, eos=2, start=2),
}

FAMILY_NAMES = list(MODEL_SPECS)


def _hf_classes(family):
    import transformers as tr
    return {
        "marian": (tr.MarianConfig, tr.MarianMTModel),
        "bart": (tr.BartConfig, tr.BartForConditionalGeneration),
        "mbart": (tr.MBartConfig, tr.MBartForConditionalGeneration),
        "m2m_100": (tr.M2M100Config, tr.M2M100ForConditionalGeneration),
    }[family]


def reinit_parameters(model, family, seed):
    """Give every parameter (and final_logits_bias) non-trivial random values so that a
    loader that drops or swaps any tensor fails parity. Marian's sinusoidal position
    tables are registered as parameters but are not stored in the checkpoint (they are
    recomputed at load), so they keep their values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if family == "marian" and "embed_positions" in name:
                continue
            if p.dim() >= 2:
                fan_in = p.shape[-1]
                if "embed" in name or "shared" in name or "lm_head" in name:
                    std = 0.3
                else:
                    # ~1.4/sqrt(fan_in): weights of O(1) effect per layer, so every
                    # matrix matters without blowing activations up.
                    std = 1.4 / fan_in ** 0.5
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:  # biases, LayerNorm biases
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("final_logits_bias"):
                b.copy_(0.5 * torch.randn(b.shape, generator=gen))


def build_hf_model(name, seed=0):
    spec = MODEL_SPECS[name]
    config_cls, model_cls = _hf_classes(spec["family"])
    torch.manual_seed(seed)
    with quiet():
        config = config_cls(**spec["config"])
        model = model_cls(config)
    reinit_parameters(model, spec["family"], seed + 1)
    return model.eval()


def save_hf_model(model, directory, weights="safetensors"):
    """weights: "safetensors" (save_pretrained) or "bin" (pytorch_model.bin written with
    torch.save of the full state_dict, as older checkpoints on the hub are)."""
    with quiet():
        model.save_pretrained(str(directory))
    if weights == "bin":
        st = directory / "model.safetensors"
        st.unlink()
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        torch.save(state, str(directory / "pytorch_model.bin"))
    return directory


def load_hf_reference(name, directory):
    """The checkpoint as transformers itself reads it back, in float64 with eager
    attention: the reference the engine's fp32 output is compared to."""
    _, model_cls = _hf_classes(MODEL_SPECS[name]["family"])
    with quiet():
        model = model_cls.from_pretrained(str(directory), attn_implementation="eager")
    return model.double().eval()


# --------------------------------------------------------------------------------------
# Token batches
# --------------------------------------------------------------------------------------

def vocab_sizes(name):
    cfg = MODEL_SPECS[name]["config"]
    src = cfg["vocab_size"]
    tgt = cfg.get("decoder_vocab_size") or src
    return src, tgt


def random_tokens(rng, n, vocab, avoid):
    """n token ids in [3, vocab) avoiding the ids in `avoid` (pad must never appear at a
    real position: m2m_100 derives positions from non-pad tokens)."""
    choices = np.array([t for t in range(3, vocab) if t not in set(avoid)])
    return [int(t) for t in rng.choice(choices, size=n)]


def make_batch(name, src_lens, tgt_lens, seed=0):
    """Source rows end with EOS; target rows start with the decoder start token."""
    spec = MODEL_SPECS[name]
    src_v, tgt_v = vocab_sizes(name)
    rng = np.random.default_rng(seed)
    avoid = {spec["pad"], spec["eos"], spec["start"]}
    src = [random_tokens(rng, n - 1, src_v, avoid) + [spec["eos"]] for n in src_lens]
    tgt = [[spec["start"]] + random_tokens(rng, n - 1, tgt_v, avoid) for n in tgt_lens]
    return src, tgt


def pad_batch(rows, pad_id):
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    return ids, mask


def hf_logits(ref, name, src, tgt):
    """float64 logits from transformers, right padding with attention masks."""
    pad = MODEL_SPECS[name]["pad"]
    src_ids, src_mask = pad_batch(src, pad)
    tgt_ids, tgt_mask = pad_batch(tgt, pad)
    with torch.no_grad():
        out = ref(input_ids=torch.from_numpy(src_ids), attention_mask=torch.from_numpy(src_mask),
                  decoder_input_ids=torch.from_numpy(tgt_ids),
                  decoder_attention_mask=torch.from_numpy(tgt_mask))
    return out.logits.numpy()


def hf_encoder_output(ref, name, src):
    pad = MODEL_SPECS[name]["pad"]
    src_ids, src_mask = pad_batch(src, pad)
    with torch.no_grad():
        out = ref.get_encoder()(input_ids=torch.from_numpy(src_ids),
                                attention_mask=torch.from_numpy(src_mask))
    return out.last_hidden_state.numpy()


# --------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------

def rel_err(actual, expected):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


def assert_rel_close(actual, expected, rel=1e-4, what=""):
    """max|a-b| / max|b| <= rel, and elementwise allclose(atol=rel*max|b|)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values in output"
    err = rel_err(actual, expected)
    assert err <= rel, f"{what}: max relative error {err:.3e} > {rel:.0e}"
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64),
                               rtol=rel, atol=rel * scale, err_msg=what)


def assert_rows_close(actual, expected, lengths, rel=1e-4, what=""):
    """Compare (batch, T, ...) arrays only on the first lengths[b] positions of row b."""
    assert actual.shape[0] == expected.shape[0] == len(lengths), (
        f"{what}: batch {actual.shape[0]} vs {expected.shape[0]} vs {len(lengths)}")
    for b, n in enumerate(lengths):
        assert_rel_close(actual[b, :n], expected[b, :n], rel=rel, what=f"{what} row {b}")


# --------------------------------------------------------------------------------------
# Decoding checkpoints. Random tiny models make poor decoding tests: their next-token
# distributions are flat, their decoders mostly copy the encoder so the same token is
# predicted forever, and EOS either comes first or never. The GEN_SPECS checkpoints are
# edited so that search has something to do:
#   * cross_scale shrinks the decoder's cross-attention output, so the decoder input
#     (the last generated token) drives the next prediction;
#   * logit_scale sharpens the distributions (final decoder layer norm scaled);
#   * EOS is made likely right after a random 15% subset S of target tokens: the EOS row
#     of the output projection is a linear probe (difference of the mean hidden state
#     after a token of S and after any other token) giving EOS a logit eos_alpha higher
#     after S, centred at eos_beta. Hypotheses then end at varied lengths, and beam search,
#     length penalty and min_length change the result;
#   * pad_bias raises the pad logit (Marian): pad is then generated unless banned, so the
#     checkpoint's bad_words_ids [[pad]] matters.
# `generation` adds keys to the directory's generation_config.json.
# --------------------------------------------------------------------------------------

GEN_SPECS = {
    # opus-mt: tied embeddings and output projection, bad_words_ids [[pad]] and
    # forced_eos_token_id 0 in generation_config.json (as on the hub).
    "marian_gen": dict(base="marian", seed=0, tie=True, cross_scale=0.25, logit_scale=1.0,
                       eos_alpha=6.0, eos_beta=-2.0, pad_bias=4.0,
                       generation=dict(bad_words_ids=[[96]])),
    # BART: forced_eos_token_id 2 from the config; decoder start token == EOS.
    "bart_gen": dict(base="bart", seed=0, tie=False, cross_scale=1.0, logit_scale=1.0,
                     eos_alpha=6.0, eos_beta=-3.0, pad_bias=0.0, generation={}),
    # M2M100: no forced EOS, no final_logits_bias, decoder start token == EOS.
    "m2m_100_gen": dict(base="m2m_100", seed=0, tie=False, cross_scale=1.0, logit_scale=1.0,
                        eos_alpha=6.0, eos_beta=-3.0, pad_bias=0.0, generation={}),
}


def gen_spec(name):
    """The MODEL_SPECS entry of a GEN_SPECS checkpoint (pad / eos / start / config)."""
    return MODEL_SPECS[GEN_SPECS[name]["base"]]


def _final_decoder_norm(model, family):
    if family in ("marian", "bart"):  # post-norm: the last layer's output norm
        return model.model.decoder.layers[-1].final_layer_norm
    return model.model.decoder.layer_norm


def _lm_head_inputs(model, name, seed):
    """Hidden states entering lm_head for random prefixes, and each one's last input id."""
    spec = MODEL_SPECS[name]
    rng = np.random.default_rng(seed)
    src, tgt = make_batch(name, [int(n) for n in rng.integers(2, 16, 64)],
                          [int(n) for n in rng.integers(2, 12, 64)], seed=seed)
    src_ids, src_mask = pad_batch(src, spec["pad"])
    tgt_ids, tgt_mask = pad_batch(tgt, spec["pad"])
    captured = {}

    def hook(module, inputs, output):
        captured["h"] = inputs[0].detach()

    handle = model.lm_head.register_forward_hook(hook)
    with torch.no_grad():
        model(input_ids=torch.from_numpy(src_ids), attention_mask=torch.from_numpy(src_mask),
              decoder_input_ids=torch.from_numpy(tgt_ids),
              decoder_attention_mask=torch.from_numpy(tgt_mask))
    handle.remove()
    real = torch.from_numpy(tgt_mask).bool()
    return captured["h"][real], torch.from_numpy(tgt_ids)[real]


def build_gen_model(name):
    """The float32 transformers model of GEN_SPECS[name] (see above)."""
    g = GEN_SPECS[name]
    base = g["base"]
    spec = MODEL_SPECS[base]
    family = spec["family"]
    config_cls, model_cls = _hf_classes(family)
    torch.manual_seed(g["seed"])
    with quiet():
        model = model_cls(config_cls(**spec["config"], tie_word_embeddings=g["tie"]))
    reinit_parameters(model, family, g["seed"] + 1)
    eos, pad, start = spec["eos"], spec["pad"], spec["start"]
    with torch.no_grad():
        for layer in model.model.decoder.layers:
            layer.encoder_attn.out_proj.weight.mul_(g["cross_scale"])
        norm = _final_decoder_norm(model, family)
        norm.weight.mul_(g["logit_scale"])
        norm.bias.mul_(g["logit_scale"])

        _, tgt_vocab = vocab_sizes(base)
        rng = np.random.default_rng(g["seed"] + 100)
        candidates = [t for t in range(3, tgt_vocab) if t not in (pad, eos, start)]
        enders = set(int(t) for t in rng.choice(candidates, size=int(0.15 * len(candidates)),
                                                replace=False))
        h, last = _lm_head_inputs(model, base, g["seed"] + 101)
        after = torch.tensor([int(t) in enders for t in last])
        diff = h[after].mean(0) - h[~after].mean(0)
        mid = 0.5 * (h[after].mean(0) + h[~after].mean(0))
        w = g["eos_alpha"] * diff / (diff @ diff)
        offset = g["eos_beta"] - float(w @ mid)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias[0, eos] = offset
            model.final_logits_bias[0, pad] += g["pad_bias"]
        else:
            w = w + offset * mid / (mid @ mid)
        model.lm_head.weight[eos] = w
    return model.eval()


def save_gen_checkpoint(name, directory):
    """Writes GEN_SPECS[name] as a Hugging Face directory, generation_config.json included."""
    from transformers import GenerationConfig
    model = build_gen_model(name)
    save_hf_model(model, directory)
    extra = GEN_SPECS[name]["generation"]
    if extra:
        with quiet():
            gc = GenerationConfig.from_pretrained(str(directory))
            for key, value in extra.items():
                setattr(gc, key, value)
            gc.save_pretrained(str(directory))
    return directory


def gen_sources(name, n=24, seed=0, min_len=1, max_len=15):
    """n EOS-terminated sources of lengths min_len..max_len (each length at least once
    when n allows), shuffled."""
    base = GEN_SPECS[name]["base"] if name in GEN_SPECS else name
    rng = np.random.default_rng(seed)
    lengths = list(range(min_len, max_len + 1))
    lengths = (lengths * (n // len(lengths) + 1))[:n]
    lengths = [int(x) for x in rng.permutation(lengths)]
    src, _ = make_batch(base, lengths, [1] * n, seed=seed + 1)
    return src


# --------------------------------------------------------------------------------------
# transformers generate as the decoding reference
# --------------------------------------------------------------------------------------

# tformer option -> transformers generate() keyword
HF_OPTION = {"beam_size": "num_beams", "max_length": "max_new_tokens",
             "min_length": "min_new_tokens", "num_hypotheses": "num_return_sequences",
             "length_penalty": "length_penalty", "early_stopping": "early_stopping",
             "no_repeat_ngram_size": "no_repeat_ngram_size",
             "repetition_penalty": "repetition_penalty", "bad_words_ids": "bad_words_ids",
             "forced_bos_token_id": "forced_bos_token_id",
             "forced_eos_token_id": "forced_eos_token_id", "eos_token_id": "eos_token_id",
             "decoder_start_token_id": "decoder_start_token_id"}


def hf_options(options):
    """transformers generate() kwargs for tformer generate options (greedy/beam)."""
    kwargs = {"do_sample": False, "num_beams": 1}
    for key, value in options.items():
        if key in ("return_scores", "return_attention", "max_batch_size"):
            continue
        kwargs[HF_OPTION[key]] = value
    return kwargs


def strip_hf_sequence(seq, start, eos, max_new_tokens):
    """A transformers output row -> tformer's convention: drop the decoder start token,
    cut at the first EOS (dropping it and the padding after it). A row without EOS must
    have run to max_new_tokens. eos: an id or a list of ids. Returns (tokens, ended)."""
    seq = [int(t) for t in seq]
    eos_ids = set(eos) if isinstance(eos, (list, tuple)) else {eos}
    assert seq[0] == start, f"HF row does not begin with the start token {start}: {seq}"
    rest = seq[1:]
    for i, t in enumerate(rest):
        if t in eos_ids:
            return rest[:i], True
    assert len(rest) == max_new_tokens, f"HF row without EOS is not max_new_tokens long: {seq}"
    return rest, False


class HFGeneration:
    """transformers generate on a batch: n-best tokens per source (tformer's
    convention), whether each hypothesis ended with EOS, sequences_scores (beam) or the
    greedy score, and for greedy the last layer's head-averaged cross-attention."""

    def __init__(self, tokens, ended, scores, attention):
        self.tokens = tokens        # [source][hypothesis] -> list of ids
        self.ended = ended          # [source][hypothesis] -> bool
        self.scores = scores        # [source][hypothesis] -> float
        self.attention = attention  # [source] -> (steps, src_len) array, greedy only


def hf_generate(ref, base, src, generation_config=None, attention=False, **options):
    """Runs ref.generate (float64 model, eval, no_grad) on the right-padded batch `src`
    with the tformer `options` translated by hf_options."""
    spec = MODEL_SPECS[base]
    kwargs = hf_options(options)
    n_ret = kwargs.get("num_return_sequences", 1)
    max_new = kwargs["max_new_tokens"]
    ids, mask = pad_batch(src, spec["pad"])
    saved = ref.generation_config
    if generation_config is not None:
        ref.generation_config = generation_config
    try:
        with torch.no_grad(), quiet():
            out = ref.generate(input_ids=torch.from_numpy(ids),
                               attention_mask=torch.from_numpy(mask),
                               output_scores=True, return_dict_in_generate=True,
                               output_attentions=attention, **kwargs)
    finally:
        ref.generation_config = saved
    beam = kwargs["num_beams"] > 1
    eos = options.get("eos_token_id", spec["eos"])
    start = options.get("decoder_start_token_id", spec["start"])
    rows = out.sequences.tolist()
    tokens, ended, scores, attn = [], [], [], []
    for b in range(len(src)):
        tok_b, end_b, score_b = [], [], []
        for h in range(n_ret):
            r = b * n_ret + h
            t, e = strip_hf_sequence(rows[r], start, eos, max_new)
            tok_b.append(t)
            end_b.append(e)
            if beam:
                score_b.append(float(out.sequences_scores[r]))
            else:
                steps = len(t) + int(e)
                total = 0.0
                for s in range(steps):
                    logp = torch.log_softmax(out.scores[s][r].double(), dim=-1)
                    total += float(logp[rows[r][s + 1]])
                score_b.append(total)
        tokens.append(tok_b)
        ended.append(end_b)
        scores.append(score_b)
        if attention and not beam:
            steps = len(tok_b[0]) + int(end_b[0])
            rows_a = [out.cross_attentions[s][-1][b].mean(dim=0)[0, :len(src[b])].numpy()
                      for s in range(steps)]
            attn.append(np.stack(rows_a))
    return HFGeneration(tokens, ended, scores, attn)


def generation_config_without(ref, **overrides):
    """A copy of ref.generation_config with some keys replaced (None switches a
    processor off), for the transformers side of `bad_words_ids=[]` and the like."""
    import copy
    gc = copy.deepcopy(ref.generation_config)
    for key, value in overrides.items():
        setattr(gc, key, value)
    return gc


def first_mismatch(actual, expected):
    """'' when the nested token lists are equal, else a readable first difference."""
    if len(actual) != len(expected):
        return f"{len(actual)} results, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        if a != e:
            return f"source {i}: got {a}, transformers gives {e}"
    return ""


def stop_process(proc, timeout=20):
    """Ends a server a test started: SIGTERM, then SIGKILL if it has not exited in `timeout` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------------------
# small helpers shared by the serving and kernel tests
# --------------------------------------------------------------------------------------

def run_concurrently(fn, args):
    """fn(arg) for every arg, each on its own thread, all released at once; results in order."""
    import threading
    out = [None] * len(args)
    barrier = threading.Barrier(len(args))

    def one(i):
        barrier.wait()
        out[i] = fn(args[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def wait_for(predicate, what, timeout=15.0):
    """Polls predicate() until it is truthy (returned) or `timeout` seconds pass (assertion)."""
    import time
    end = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def cpu_has(isa):
    """Whether this CPU runs the tformer kernel build `isa` (base, avx2, avx512)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return isa == "base"
    need = {"base": [], "avx2": ["avx2", "fma"], "avx512": ["avx512f", "avx512bw", "avx512dq", "avx512vl"]}[isa]
    return all(f" {flag}" in flags for flag in need)


def wait_for_server(port, proc, output, timeout=60.0):
    """Polls GET /health of a server started as `proc` on 127.0.0.1:port until it answers 200;
    fails with output() (the server's log) if the process ends or `timeout` seconds pass."""
    import http.client
    import time
    end = time.time() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            finally:
                conn.close()
        except OSError:
            pass
        assert proc.poll() is None, "the server stopped:\n" + output()
        assert time.time() < end, f"server did not start in {timeout:.0f} s:\n" + output()
        time.sleep(0.2)

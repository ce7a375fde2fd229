"""model.generate against transformers' generate (docs/DECODING.md), token for token.

The checkpoints are tf_testlib.GEN_SPECS: tiny random Marian / BART / M2M100 models edited
so that hypotheses end with EOS at varied lengths and search matters (see the comment
there; test_references_exercise_search checks it). The reference is transformers'
`generate` on the float64 model read back from the same directory, so both sides use the
same generation_config.json. transformers returns the decoder start token first and EOS
(then padding) at the end; tf_testlib.strip_hf_sequence converts its rows to tformer's
convention (no start token, no final EOS).
"""

import collections

import numpy as np
import pytest

import tf_testlib as lib

GEN_NAMES = ["marian_gen", "bart_gen", "m2m_100_gen"]
MAX_LEN = 12
N_SOURCES = 24
# |tformer - transformers| <= SCORE_TOL * max(1, |transformers|): float32 engine against a
# float64 model whose beam scores transformers accumulates in float32.
SCORE_TOL = 1e-4
ATTN_TOL = 1e-4

DECODING = {
    "greedy": dict(beam_size=1),
    "greedy_min4": dict(beam_size=1, min_length=4),
    "beam4_lp0.6": dict(beam_size=4, length_penalty=0.6),
    "beam4_lp1.0": dict(beam_size=4, length_penalty=1.0),
    "beam4_lp1.2": dict(beam_size=4, length_penalty=1.2),
    "beam4_nbest3": dict(beam_size=4, num_hypotheses=3),
    "beam4_nbest3_lp0.6": dict(beam_size=4, num_hypotheses=3, length_penalty=0.6),
    "beam4_min4": dict(beam_size=4, min_length=4),
    "beam4_early_stopping": dict(beam_size=4, early_stopping=True),
    "beam2_max5": dict(beam_size=2, max_length=5),
}


def _sources(name, seed=3):
    return lib.gen_sources(name, N_SOURCES, seed=seed)


def _options(decoding, **extra):
    return {"max_length": MAX_LEN, **DECODING[decoding], **extra}


def _assert_tokens_equal(results, expected, what):
    got = [r.tokens for r in results]
    msg = lib.first_mismatch(got, expected.tokens)
    assert not msg, f"{what}: {msg}"


def _assert_scores_close(results, expected, what):
    for i, (r, e) in enumerate(zip(results, expected.scores)):
        assert len(r.scores) == len(e), f"{what}: source {i} has {len(r.scores)} scores, expected {len(e)}"
        for h, (a, b) in enumerate(zip(r.scores, e)):
            assert abs(a - b) <= SCORE_TOL * max(1.0, abs(b)), (
                f"{what}: source {i} hypothesis {h} ({r.tokens[h]}): score {a:.6f}, "
                f"transformers {b:.6f}")


def _ran_to_max(tokens, ended, max_len):
    """A hypothesis that used all max_len steps (EOS forced or natural at the last one,
    or no EOS at all)."""
    return len(tokens) + int(ended) >= max_len


# ---- the checkpoints are sound and the references are not degenerate ----------------

@pytest.mark.parametrize("name", GEN_NAMES)
def test_gen_checkpoint_forward_matches_transformers(gen_zoo, device, name):
    """Loading precondition for the tests below: the edited checkpoints load right."""
    ckpt = gen_zoo(name)
    src, tgt = lib.make_batch(ckpt.base, [1, 6, 15], [4, 1, 9], seed=7)
    lib.assert_rows_close(ckpt.model(device).forward(src, tgt),
                          lib.hf_logits(ckpt.ref, ckpt.base, src, tgt), [4, 1, 9],
                          rel=1e-4, what=f"{name} forward")


@pytest.mark.parametrize("name", GEN_NAMES)
def test_references_exercise_search(gen_zoo, name):
    """The transformers references of this file: some hypotheses end with EOS before
    max_length and others run to it, beam search differs from greedy, length penalty and
    min_length change results. If this fails, the parity tests below prove little."""
    ckpt = gen_zoo(name)
    src = _sources(name)
    runs = {d: ckpt.hf(src, **_options(d)) for d in ("greedy", "beam4_lp0.6", "beam4_lp1.0",
                                                     "beam4_lp1.2", "greedy_min4")}
    for d in ("greedy", "beam4_lp1.0"):
        early = [i for i, (t, e) in enumerate(zip(runs[d].tokens, runs[d].ended))
                 if not _ran_to_max(t[0], e[0], MAX_LEN)]
        full = [i for i, (t, e) in enumerate(zip(runs[d].tokens, runs[d].ended))
                if _ran_to_max(t[0], e[0], MAX_LEN)]
        assert len(early) >= 3 and len(full) >= 3, (d, early, full)
        lengths = {len(runs[d].tokens[i][0]) for i in early}
        assert len(lengths) >= 3, f"{d}: early hypotheses all of lengths {lengths}"

    def n_diff(a, b):
        return sum(x != y for x, y in zip(runs[a].tokens, runs[b].tokens))

    assert n_diff("greedy", "beam4_lp1.0") >= 3
    assert n_diff("beam4_lp0.6", "beam4_lp1.2") >= 2
    assert n_diff("greedy", "greedy_min4") >= 1


# ---- greedy and beam search, token for token -----------------------------------------

@pytest.mark.parametrize("decoding", list(DECODING))
@pytest.mark.parametrize("name", GEN_NAMES)
def test_generate_matches_transformers(gen_zoo, device, name, decoding):
    ckpt = gen_zoo(name)
    src = _sources(name)
    options = _options(decoding)
    expected = ckpt.hf(src, **options)
    results = ckpt.model(device).generate(src, return_scores=True, **options)
    what = f"{name} {decoding}"
    assert len(results) == len(src), what
    n_best = options.get("num_hypotheses", 1)
    for i, r in enumerate(results):
        assert len(r.tokens) == n_best, f"{what}: source {i} has {len(r.tokens)} hypotheses"
        assert r.attention == [], f"{what}: attention filled without return_attention"
    _assert_tokens_equal(results, expected, what)
    _assert_scores_close(results, expected, what)


@pytest.mark.parametrize("name", GEN_NAMES)
def test_scores_not_filled_unless_asked(gen_zoo, device, name):
    ckpt = gen_zoo(name)
    src = _sources(name)[:6]
    options = _options("beam4_nbest3")
    plain = ckpt.model(device).generate(src, **options)
    assert all(r.scores == [] for r in plain)
    _assert_tokens_equal(plain, ckpt.hf(src, **options), f"{name} without return_scores")


@pytest.mark.parametrize("name", GEN_NAMES)
def test_nbest_is_sorted_and_distinct(gen_zoo, device, name):
    ckpt = gen_zoo(name)
    results = ckpt.model(device).generate(_sources(name), return_scores=True,
                                          **_options("beam4_nbest3"))
    for i, r in enumerate(results):
        assert r.scores == sorted(r.scores, reverse=True), f"source {i}: {r.scores}"
        assert len({tuple(t) for t in r.tokens}) == len(r.tokens), f"source {i}: {r.tokens}"


# ---- the directory's generation_config.json -------------------------------------------

@pytest.mark.parametrize("decoding", ["greedy", "beam4_nbest3"])
def test_marian_generation_config_bans_pad_and_forces_eos(gen_zoo, device, decoding):
    """generation_config.json of marian_gen: bad_words_ids [[96]] (pad) and
    forced_eos_token_id 0. The checkpoint favours pad (pad_bias), so the ban matters."""
    ckpt = gen_zoo("marian_gen")
    src = _sources("marian_gen")
    options = _options(decoding)
    results = ckpt.model(device).generate(src, return_scores=True, **options)
    _assert_tokens_equal(results, ckpt.hf(src, **options), f"marian_gen {decoding}")
    hyps = [t for r in results for t in r.tokens]
    assert all(ckpt.pad not in t for t in hyps), "pad generated despite bad_words_ids [[pad]]"
    # EOS is forced at the last step: no hypothesis has max_length tokens besides EOS.
    assert max(len(t) for t in hyps) == MAX_LEN - 1


@pytest.mark.parametrize("decoding", ["greedy", "beam4_nbest3"])
@pytest.mark.parametrize("switch", ["bad_words", "forced_eos", "both"])
def test_marian_generation_config_switched_off(gen_zoo, device, decoding, switch):
    """bad_words_ids=[] / forced_eos_token_id=-1 switch the directory's values off
    (transformers: the same generation config with those keys set to None)."""
    ckpt = gen_zoo("marian_gen")
    src = _sources("marian_gen")
    ours, theirs = {}, {}
    if switch in ("bad_words", "both"):
        ours["bad_words_ids"] = []
        theirs["bad_words_ids"] = None
    if switch in ("forced_eos", "both"):
        ours["forced_eos_token_id"] = -1
        theirs["forced_eos_token_id"] = None
    options = _options(decoding)
    gc = lib.generation_config_without(ckpt.ref, **theirs)
    expected = ckpt.hf(src, generation_config=gc, **options)
    results = ckpt.model(device).generate(src, return_scores=True, **options, **ours)
    what = f"marian_gen {decoding} without {switch}"
    _assert_tokens_equal(results, expected, what)
    _assert_scores_close(results, expected, what)
    hyps = [t for r in results for t in r.tokens]
    if "bad_words_ids" in ours:
        assert any(ckpt.pad in t for t in hyps), "pad never generated once allowed"
    if "forced_eos_token_id" in ours:
        assert any(len(t) == MAX_LEN for t in hyps), "no hypothesis ran to max_length"


# ---- explicit logits processors -------------------------------------------------------

def _most_common_bigram_and_token(tokens):
    bigrams = collections.Counter()
    unigrams = collections.Counter()
    for hyps in tokens:
        t = hyps[0]
        bigrams.update(zip(t, t[1:]))
        unigrams.update(t)
    (a, b), _ = bigrams.most_common(1)[0]
    c = next(tok for tok, _ in unigrams.most_common() if tok not in (a, b))
    return [a, b], c


def _processor_options(ckpt, src, processor, decoding):
    if processor == "no_repeat_ngram_size":
        return {"no_repeat_ngram_size": 2}
    if processor == "repetition_penalty":
        return {"repetition_penalty": 1.3}
    # bad_words_ids: a bigram the unconstrained search produces, and a frequent token.
    plain = ckpt.hf(src, **_options(decoding))
    bigram, token = _most_common_bigram_and_token(plain.tokens)
    return {"bad_words_ids": [bigram, [token]]}


def _has_sublist(seq, sub):
    return any(seq[i:i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


@pytest.mark.parametrize("decoding", ["greedy", "beam4_nbest3"])
@pytest.mark.parametrize("processor", ["no_repeat_ngram_size", "repetition_penalty",
                                       "bad_words_ids"])
@pytest.mark.parametrize("name", GEN_NAMES)
def test_logits_processors_match_transformers(gen_zoo, device, name, processor, decoding):
    ckpt = gen_zoo(name)
    src = _sources(name)
    extra = _processor_options(ckpt, src, processor, decoding)
    options = _options(decoding, **extra)
    expected = ckpt.hf(src, **options)
    plain = ckpt.hf(src, **_options(decoding))
    assert expected.tokens != plain.tokens, f"{processor}={extra} changes nothing here"
    results = ckpt.model(device).generate(src, return_scores=True, **options)
    what = f"{name} {decoding} {extra}"
    _assert_tokens_equal(results, expected, what)
    _assert_scores_close(results, expected, what)
    hyps = [t for r in results for t in r.tokens]
    if processor == "no_repeat_ngram_size":
        for t in hyps:
            pairs = list(zip(t, t[1:]))
            assert len(pairs) == len(set(pairs)), f"repeated bigram in {t}"
    if processor == "bad_words_ids":
        bigram, (token,) = extra["bad_words_ids"]
        for t in hyps:
            assert not _has_sublist(t, bigram), f"banned {bigram} in {t}"
            assert token not in t, f"banned {token} in {t}"


# ---- target_prefix / forced_bos_token_id (M2M100 language token) ----------------------

LANG = 7  # an ordinary id of m2m_100_gen, standing for a target-language token


@pytest.mark.parametrize("decoding", ["greedy", "beam4_lp1.0", "beam4_nbest3"])
@pytest.mark.parametrize("how", ["target_prefix", "forced_bos_token_id"])
def test_forced_bos_matches_transformers(gen_zoo, device, decoding, how):
    ckpt = gen_zoo("m2m_100_gen")
    src = _sources("m2m_100_gen")
    options = _options(decoding)
    expected = ckpt.hf(src, forced_bos_token_id=LANG, **options)
    plain = ckpt.hf(src, **options)
    assert sum(t[0][:1] == [LANG] for t in plain.tokens) < len(src) // 2
    extra = ({"target_prefix": [[LANG]] * len(src)} if how == "target_prefix"
             else {"forced_bos_token_id": LANG})
    results = ckpt.model(device).generate(src, return_scores=True, **options, **extra)
    what = f"m2m_100_gen {decoding} {how}={LANG}"
    _assert_tokens_equal(results, expected, what)
    _assert_scores_close(results, expected, what)
    assert all(t[0] == LANG for r in results for t in r.tokens)


def test_target_prefix_per_source(gen_zoo, device):
    """Each source gets its own prefix; results equal transformers run per prefix."""
    ckpt = gen_zoo("m2m_100_gen")
    src = _sources("m2m_100_gen")
    langs = [LANG if i % 3 else 11 for i in range(len(src))]
    options = _options("beam4_nbest3")
    results = ckpt.model(device).generate(src, target_prefix=[[x] for x in langs],
                                          return_scores=True, **options)
    for lang in (LANG, 11):
        idx = [i for i, x in enumerate(langs) if x == lang]
        expected = ckpt.hf([src[i] for i in idx], forced_bos_token_id=lang, **options)
        sub = [results[i] for i in idx]
        _assert_tokens_equal(sub, expected, f"prefix [{lang}]")
        _assert_scores_close(sub, expected, f"prefix [{lang}]")


# ---- return_attention ------------------------------------------------------------------

@pytest.mark.parametrize("name", GEN_NAMES)
def test_greedy_attention_matches_transformers(gen_zoo, device, name):
    ckpt = gen_zoo(name)
    src = _sources(name)
    options = _options("greedy")
    expected = ckpt.hf(src, attention=True, **options)
    results = ckpt.model(device).generate(src, return_attention=True, **options)
    _assert_tokens_equal(results, expected, f"{name} greedy with return_attention")
    for i, (r, e) in enumerate(zip(results, expected.attention)):
        assert len(r.attention) == 1
        a = r.attention[0]
        assert isinstance(a, np.ndarray) and a.dtype == np.float32, (type(a), getattr(a, "dtype", None))
        steps = len(r.tokens[0]) + int(expected.ended[i][0])
        assert a.shape == (steps, len(src[i])), f"source {i}: shape {a.shape}"
        np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5, err_msg=f"source {i}")
        np.testing.assert_allclose(a, e, rtol=0, atol=ATTN_TOL, err_msg=f"{name} source {i}")


def _teacher_forced_attention(ckpt, src, tokens, steps):
    """transformers' last-layer cross-attention, averaged over heads, when the decoder
    reads [start] + tokens[:steps - 1]: the attention of each of the `steps` steps."""
    import torch
    dec = [ckpt.start] + list(tokens[:steps - 1])
    with torch.no_grad():
        out = ckpt.ref(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([dec]),
                       output_attentions=True)
    return out.cross_attentions[-1][0].mean(dim=0).numpy()


@pytest.mark.parametrize("name", GEN_NAMES)
def test_beam_attention_matches_teacher_forcing(gen_zoo, device, name):
    """Beam search n-best: each hypothesis' attention equals transformers' cross-attention
    on that hypothesis read with teacher forcing."""
    ckpt = gen_zoo(name)
    src = _sources(name)[:12]
    options = _options("beam4_nbest3")
    results = ckpt.model(device).generate(src, return_attention=True, **options)
    expected = ckpt.hf(src, **options)
    _assert_tokens_equal(results, expected, f"{name} beam with return_attention")
    for i, r in enumerate(results):
        assert len(r.attention) == 3
        for h, a in enumerate(r.attention):
            steps = len(r.tokens[h]) + int(expected.ended[i][h])
            assert a.shape == (steps, len(src[i])), f"source {i} hyp {h}: {a.shape}"
            np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
            np.testing.assert_allclose(a, _teacher_forced_attention(ckpt, src[i], r.tokens[h], steps),
                                       rtol=0, atol=ATTN_TOL, err_msg=f"{name} source {i} hyp {h}")


# ---- eos_token_id / decoder_start_token_id options -------------------------------------

@pytest.mark.parametrize("decoding", ["greedy", "beam4_nbest3"])
@pytest.mark.parametrize("name", GEN_NAMES)
def test_eos_token_id_list_matches_transformers(gen_zoo, device, name, decoding):
    """eos_token_id=[eos, x]: x ends hypotheses too (and beam search keeps
    max(2, 1 + 2) * beam_size candidates)."""
    ckpt = gen_zoo(name)
    src = _sources(name)
    plain = ckpt.hf(src, **_options(decoding))
    counts = collections.Counter(t for hyps in plain.tokens for t in hyps[0])
    x = counts.most_common(1)[0][0]
    options = _options(decoding, eos_token_id=[ckpt.eos, x])
    expected = ckpt.hf(src, **options)
    assert expected.tokens != plain.tokens
    results = ckpt.model(device).generate(src, return_scores=True, **options)
    what = f"{name} {decoding} eos_token_id=[{ckpt.eos}, {x}]"
    _assert_tokens_equal(results, expected, what)
    _assert_scores_close(results, expected, what)
    assert all(x not in t for r in results for t in r.tokens)


@pytest.mark.parametrize("decoding", ["greedy", "beam4_nbest3"])
def test_decoder_start_token_id_matches_transformers(gen_zoo, device, decoding):
    ckpt = gen_zoo("m2m_100_gen")
    src = _sources("m2m_100_gen")
    options = _options(decoding, decoder_start_token_id=LANG)
    expected = ckpt.hf(src, **options)
    assert expected.tokens != ckpt.hf(src, **_options(decoding)).tokens
    results = ckpt.model(device).generate(src, return_scores=True, **options)
    what = f"m2m_100_gen {decoding} decoder_start_token_id={LANG}"
    _assert_tokens_equal(results, expected, what)
    _assert_scores_close(results, expected, what)

"""Sampling (do_sample=True, docs/DECODING.md): seeds, and the distribution of the first
sampled token against softmax of the float64 transformers logits at the first step,
after temperature, top-k and top-p in that order.

Distribution tests draw N first tokens (max_length=1) and run a chi-square
goodness-of-fit test (bins with expected count >= 5, the rest pooled). Seeds are fixed,
so each test is deterministic; a correct sampler fails one with probability P_MIN.
"""

import numpy as np
import pytest
import torch

import tf_testlib as lib

NAME = "m2m_100_gen"  # nothing in its generation_config.json changes the distribution
N = 4000
P_MIN = 1e-4


@pytest.fixture(scope="module")
def ckpt(gen_zoo):
    return gen_zoo(NAME)


@pytest.fixture(scope="module")
def source(ckpt):
    """A source whose first-step distribution is spread: top token below 0.5 and at
    least 10 tokens above 1%."""
    for src in lib.gen_sources(NAME, 24, seed=3):
        p = _softmax(_first_logits(ckpt, src))
        if p.max() < 0.5 and (p > 0.01).sum() >= 10 and len(src) >= 4:
            return src
    raise AssertionError("no suitable source")


def _first_logits(ckpt, src, start=None):
    start = ckpt.start if start is None else start
    return lib.hf_logits(ckpt.ref, ckpt.base, [src], [[start]])[0, 0].astype(np.float64)


def _softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x[np.isfinite(x)].max())
    e[~np.isfinite(x)] = 0.0
    return e / e.sum()


def _top_k(p, k):
    keep = np.zeros(p.shape, bool)
    keep[np.argsort(-p, kind="stable")[:k]] = True
    return keep


def _top_p(p, top_p):
    """transformers' TopPLogitsWarper: sort ascending, drop tokens whose cumulative
    probability is <= 1 - top_p, always keep the most likely one."""
    order = np.argsort(p, kind="stable")
    cum = np.cumsum(p[order])
    remove_sorted = cum <= 1 - top_p
    remove_sorted[-1] = False
    keep = np.ones(p.shape, bool)
    keep[order[remove_sorted]] = False
    return keep


def _renormalise(p, keep):
    q = np.where(keep, p, 0.0)
    return q / q.sum()


def _first_tokens(results, eos):
    """The first generated token of each result (EOS when nothing was returned)."""
    return np.array([r.tokens[0][0] if r.tokens[0] else eos for r in results])


def _chi_square_pvalue(samples, probs):
    """Chi-square goodness of fit of integer samples to probs; tokens of zero
    probability must not occur at all (asserted by the callers)."""
    n = len(samples)
    counts = np.bincount(samples, minlength=len(probs)).astype(np.float64)
    expected = probs * n
    big = expected >= 5
    obs = list(counts[big])
    exp = list(expected[big])
    rest_e = expected[~big].sum()
    if rest_e > 0:
        obs.append(counts[~big].sum())
        exp.append(rest_e)
    obs, exp = np.array(obs), np.array(exp)
    stat = float(((obs - exp) ** 2 / exp).sum())
    dof = len(obs) - 1
    pvalue = float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64),
                                           torch.tensor(stat / 2.0, dtype=torch.float64)))
    return pvalue, stat, dof


def _assert_distribution(samples, probs, what):
    outside = sorted(set(samples[probs[samples] == 0].tolist()))
    assert not outside, f"{what}: sampled tokens {outside} of probability 0"
    pvalue, stat, dof = _chi_square_pvalue(samples, probs)
    assert pvalue > P_MIN, f"{what}: chi-square {stat:.1f} with {dof} dof, p = {pvalue:.2e}"


def _sample_first(model, src, n, eos, seed=1234, **options):
    results = model.generate([src] * n, beam_size=1, do_sample=True, max_length=1, seed=seed,
                             **options)
    assert len(results) == n
    return _first_tokens(results, eos)


# ---- seeds -----------------------------------------------------------------------------

@pytest.mark.parametrize("beam_size", [1, 4])
def test_same_seed_same_output(ckpt, device, beam_size):
    src = lib.gen_sources(NAME, 8, seed=5)
    model = ckpt.model(device)
    options = dict(beam_size=beam_size, do_sample=True, max_length=12, seed=77,
                   return_scores=True)
    a = model.generate(src, **options)
    b = model.generate(src, **options)
    assert [r.tokens for r in a] == [r.tokens for r in b]
    assert [r.scores for r in a] == [r.scores for r in b]


def test_different_seeds_differ(ckpt, device):
    src = lib.gen_sources(NAME, 8, seed=5)
    model = ckpt.model(device)
    outs = {repr([r.tokens for r in model.generate(src, beam_size=1, do_sample=True,
                                                     max_length=12, seed=s)])
            for s in range(5)}
    assert len(outs) == 5, f"5 seeds gave {len(outs)} distinct outputs"


def test_seed_none_is_random(ckpt, device):
    src = lib.gen_sources(NAME, 8, seed=5)
    model = ckpt.model(device)
    outs = {repr([r.tokens for r in model.generate(src, beam_size=1, do_sample=True,
                                                     max_length=12)])
            for _ in range(3)}
    assert len(outs) >= 2, "seed=None gave the same output three times"


def test_sampling_differs_from_greedy(ckpt, device):
    src = lib.gen_sources(NAME, 8, seed=5)
    model = ckpt.model(device)
    greedy = [r.tokens for r in model.generate(src, beam_size=1, max_length=12)]
    sampled = [r.tokens for r in model.generate(src, beam_size=1, do_sample=True,
                                                max_length=12, seed=3)]
    assert greedy != sampled


# ---- distribution of the first token ---------------------------------------------------

def test_first_token_distribution_batch(ckpt, device, source):
    """N copies of one source in one batch, one seed: rows sample independently."""
    probs = _softmax(_first_logits(ckpt, source))
    samples = _sample_first(ckpt.model(device), source, N, ckpt.eos)
    _assert_distribution(samples, probs, "batch of copies")


def test_first_token_distribution_seeds(ckpt, device, source):
    """One source, many seeds."""
    probs = _softmax(_first_logits(ckpt, source))
    model = ckpt.model(device)
    samples = np.concatenate([_sample_first(model, source, 1, ckpt.eos, seed=s)
                              for s in range(1500)])
    _assert_distribution(samples, probs, "1500 seeds")


def test_first_token_score_is_its_log_probability(ckpt, device, source):
    probs = _softmax(_first_logits(ckpt, source))
    results = ckpt.model(device).generate([source] * 50, beam_size=1, do_sample=True,
                                          max_length=1, seed=9, return_scores=True)
    for r, tok in zip(results, _first_tokens(results, ckpt.eos)):
        assert len(r.scores) == 1
        assert abs(r.scores[0] - np.log(probs[tok])) <= 1e-4 * max(1.0, abs(np.log(probs[tok]))), (
            tok, r.scores[0], np.log(probs[tok]))


@pytest.mark.parametrize("k", [1, 5])
def test_topk(ckpt, device, source, k):
    probs = _softmax(_first_logits(ckpt, source))
    keep = _top_k(probs, k)
    samples = _sample_first(ckpt.model(device), source, N if k > 1 else 200, ckpt.eos,
                            sampling_topk=k)
    assert set(samples.tolist()) <= set(np.flatnonzero(keep).tolist())
    if k == 1:
        assert set(samples.tolist()) == {int(np.argmax(probs))}
    else:
        assert len(set(samples.tolist())) == k
        _assert_distribution(samples, _renormalise(probs, keep), f"top-{k}")


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature(ckpt, device, source, temperature):
    logits = _first_logits(ckpt, source)
    probs = _softmax(logits / temperature)
    samples = _sample_first(ckpt.model(device), source, N, ckpt.eos,
                            sampling_temperature=temperature)
    _assert_distribution(samples, probs, f"temperature {temperature}")
    # Power check: the same samples reject the untempered distribution.
    pvalue, _, _ = _chi_square_pvalue(samples, _softmax(logits))
    assert pvalue < 1e-6, f"T={temperature} samples do not tell T from 1 (p = {pvalue:.2e})"


@pytest.mark.parametrize("top_p", [0.5, 0.8])
def test_topp(ckpt, device, source, top_p):
    probs = _softmax(_first_logits(ckpt, source))
    keep = _top_p(probs, top_p)
    assert 2 <= keep.sum() <= len(probs) // 2, keep.sum()
    samples = _sample_first(ckpt.model(device), source, N, ckpt.eos, sampling_topp=top_p)
    _assert_distribution(samples, _renormalise(probs, keep), f"top-p {top_p}")


def test_temperature_topk_topp_order(ckpt, device, source):
    """Temperature first, then top-k, then top-p on the tempered distribution."""
    logits = _first_logits(ckpt, source)
    t, k, top_p = 2.0, 12, 0.6
    tempered = _softmax(logits / t)
    keep = _top_k(tempered, k)
    keep &= _top_p(_renormalise(tempered, keep), top_p)
    untempered_keep = _top_k(_softmax(logits), k) & _top_p(
        _renormalise(_softmax(logits), _top_k(_softmax(logits), k)), top_p)
    assert keep.sum() != untempered_keep.sum(), "parameters do not tell the orders apart"
    samples = _sample_first(ckpt.model(device), source, N, ckpt.eos, sampling_temperature=t,
                            sampling_topk=k, sampling_topp=top_p)
    _assert_distribution(samples, _renormalise(tempered, keep), "T=2, top-k 12, top-p 0.6")


def test_sampling_applies_generation_config(gen_zoo, device):
    """marian_gen bans pad (which it favours) through generation_config.json: sampling
    never gives pad, and the first token follows softmax with pad removed."""
    marian = gen_zoo("marian_gen")
    src = lib.gen_sources("marian_gen", 24, seed=3)[5]
    logits = _first_logits(marian, src)
    assert _softmax(logits)[marian.pad] > 0.05, "pad is not likely enough for this test"
    logits[marian.pad] = -np.inf
    results = marian.model(device).generate([src] * N, beam_size=1, do_sample=True,
                                            max_length=2, seed=11)
    samples = _first_tokens(results, marian.eos)
    assert all(marian.pad not in r.tokens[0] for r in results)
    _assert_distribution(samples, _softmax(logits), "marian_gen first token")


def test_sampling_min_length(ckpt, device):
    """min_length == max_length: EOS is never sampled, every output is max_length long."""
    src = lib.gen_sources(NAME, 8, seed=5)
    results = ckpt.model(device).generate(src * 20, beam_size=1, do_sample=True, max_length=6,
                                          min_length=6, seed=4)
    assert {len(r.tokens[0]) for r in results} == {6}


def test_stream_sampling_equals_generate(ckpt, device):
    model = ckpt.model(device)
    for i, src in enumerate(lib.gen_sources(NAME, 6, seed=8)):
        options = dict(beam_size=1, do_sample=True, max_length=12, seed=100 + i)
        expected = model.generate([src], **options)[0].tokens[0]
        assert list(model.generate_stream(src, **options)) == expected

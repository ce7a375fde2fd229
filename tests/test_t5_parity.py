"""T5 / mT5 against transformers (random weights from local configs, t5_testlib): bucket
ids, encoder output and logits (<= 1e-4 relative, float32 engine vs float64 reference,
real positions only), greedy and beam search token for token, sampling replayed with
tformer's draws on transformers' logits, and save/load."""

import numpy as np
import pytest
import torch
import tformer

import t5_testlib as t5
import tf_testlib as lib

REL = 1e-4
SCORE_TOL = 1e-4
# Rows of one padded batch: a length-1 source (just EOS), a length-1 target (just the start
# token), and sources past relative_attention_max_distance (the capped buckets).
SRC_LENS = [7, 1, 30, 4]
TGT_LENS = [5, 26, 1, 3]


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("buckets,max_distance", [(32, 128), (16, 20), (8, 12), (4, 3), (64, 1000)])
def test_buckets_match_transformers(bidirectional, buckets, max_distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    first, count = -3000, 6001
    expected = T5Attention._relative_position_bucket(torch.arange(first, first + count), bidirectional=bidirectional,
                                                     num_buckets=buckets, max_distance=max_distance)
    got = tformer._core.relative_position_buckets(first, count, bidirectional, buckets, max_distance)
    np.testing.assert_array_equal(np.array(got), expected.numpy())


@pytest.mark.parametrize("name", t5.T5_NAMES)
def test_config_maps_t5(t5_zoo, name):
    cfg = t5_zoo(name).model().config
    spec = t5.T5_SPECS[name]["config"]
    assert cfg.model_type == t5.T5_SPECS[name]["model_type"]
    assert (cfg.rms_norm, cfg.linear_bias, cfg.positions, cfg.attention_scale) == (True, False, "none", 1.0)
    assert cfg.head_dim == spec["d_kv"] and cfg.gated_ffn == spec["feed_forward_proj"].startswith("gated")
    assert cfg.relative_attention_buckets == spec["relative_attention_num_buckets"]
    assert cfg.tied_output == spec["tie_word_embeddings"]
    assert cfg.logits_scale == pytest.approx(spec["d_model"] ** -0.5 if spec["tie_word_embeddings"] else 1.0)
    assert (cfg.pad_id, cfg.eos_id, cfg.decoder_start_id) == (t5.PAD, t5.EOS, t5.START)


@pytest.mark.parametrize("name", t5.T5_NAMES)
def test_encoder_output_matches_hf(t5_zoo, device, name):
    ckpt = t5_zoo(name)
    src, _ = t5.batch(name, SRC_LENS, TGT_LENS, seed=1)
    out = ckpt.model(device).encode(src)
    assert out.shape == (len(src), max(SRC_LENS), t5.T5_SPECS[name]["config"]["d_model"])
    lib.assert_rows_close(out, t5.hf_encoder_output(ckpt.ref, src), SRC_LENS, rel=REL, what=f"{name} encoder")


@pytest.mark.parametrize("name", t5.T5_NAMES)
def test_logits_match_hf(t5_zoo, device, name):
    ckpt = t5_zoo(name)
    src, tgt = t5.batch(name, SRC_LENS, TGT_LENS, seed=2)
    logits = ckpt.model(device).forward(src, tgt)
    assert logits.shape == (len(tgt), max(TGT_LENS), t5.T5_SPECS[name]["config"]["vocab_size"])
    lib.assert_rows_close(logits, t5.hf_logits(ckpt.ref, src, tgt), TGT_LENS, rel=REL, what=f"{name} logits")


def test_single_token_batch_of_one(t5_zoo, device):
    ckpt = t5_zoo("t5_v11")
    src, tgt = t5.batch("t5_v11", [1], [1], seed=3)
    lib.assert_rows_close(ckpt.model(device).forward(src, tgt), t5.hf_logits(ckpt.ref, src, tgt), [1], rel=REL,
                          what="1x1")


DECODING = {
    "greedy": dict(beam_size=1),
    "beam2": dict(beam_size=2),
    "beam4_lp0.6": dict(beam_size=4, length_penalty=0.6),
    "beam4_lp1.2_nbest3": dict(beam_size=4, length_penalty=1.2, num_hypotheses=3),
    "beam5_min3": dict(beam_size=5, min_length=3),
}
MAX_LEN = 10


def _sources(name, n=12, seed=4):
    rng = np.random.default_rng(seed)
    src, _ = t5.batch(name, [int(x) for x in rng.integers(1, 25, n)], [1] * n, seed=seed)
    return src


@pytest.mark.parametrize("decoding", list(DECODING))
@pytest.mark.parametrize("name", t5.T5_NAMES)
def test_generate_matches_transformers(t5_zoo, device, name, decoding):
    ckpt = t5_zoo(name)
    src = _sources(name)
    options = {"max_length": MAX_LEN, **DECODING[decoding]}
    tokens, scores = t5.hf_generate(ckpt.ref, src, **options)
    results = ckpt.model(device).generate(src, return_scores=True, **options)
    msg = lib.first_mismatch([r.tokens for r in results], tokens)
    assert not msg, f"{name} {decoding}: {msg}"
    for i, (r, expected) in enumerate(zip(results, scores)):
        for a, b in zip(r.scores, expected):
            assert abs(a - b) <= SCORE_TOL * max(1.0, abs(b)), f"{name} {decoding} source {i}: {a} vs {b}"


@pytest.mark.parametrize("name", t5.T5_NAMES)
def test_references_exercise_search(t5_zoo, name):
    """The generate references are not degenerate: some hypotheses end before MAX_LEN and
    some run to it, and beam search changes results."""
    ckpt = t5_zoo(name)
    src = _sources(name)
    greedy, _ = t5.hf_generate(ckpt.ref, src, max_length=MAX_LEN, beam_size=1)
    beam, _ = t5.hf_generate(ckpt.ref, src, max_length=MAX_LEN, beam_size=4)
    lengths = [len(h[0]) for h in greedy + beam]
    assert min(lengths) < MAX_LEN - 1 and max(lengths) == MAX_LEN, lengths
    assert greedy != beam


@pytest.mark.parametrize("seed", [3, 11])
@pytest.mark.parametrize("name", t5.T5_NAMES)
def test_sampling_matches_replay_on_transformers_logits(t5_zoo, device, name, seed):
    ckpt = t5_zoo(name)
    src = _sources(name, n=6, seed=seed)
    results = ckpt.model(device).generate(src, beam_size=1, do_sample=True, seed=seed, max_length=MAX_LEN)
    expected = t5.sample_reference(ckpt.ref, src, seed, MAX_LEN)
    msg = lib.first_mismatch([r.tokens[0] for r in results], expected)
    assert not msg, f"{name} seed {seed}: {msg}"


@pytest.mark.parametrize("name", t5.T5_NAMES)
def test_save_load_round_trip(t5_zoo, tmp_path, name):
    model = t5_zoo(name).model()
    model.save(tmp_path / "m")
    again = tformer.Transformer.load(tmp_path / "m")
    assert again.config == model.config
    src, tgt = t5.batch(name, [9, 3], [4, 6], seed=5)
    np.testing.assert_array_equal(again.forward(src, tgt), model.forward(src, tgt))
    greedy = dict(beam_size=1, max_length=MAX_LEN)
    assert [r.tokens for r in again.generate(src, **greedy)] == [r.tokens for r in model.generate(src, **greedy)]

"""The flat gradient buffer and its buckets (cpp/training/train_graph.*): every gradient is
a view into one buffer, the buckets tile it in backward order, and a bucket announced by
the backward is final (nothing writes into it afterwards)."""
import numpy as np
import pytest
import tformer
from tformer.train import _frozen


def tiny(shared=True, tied=True, pre_norm=False, embed_norm=False):
    return tformer.TransformerConfig(src_vocab_size=40, tgt_vocab_size=40, d_model=16, encoder_layers=2,
                                     decoder_layers=3, encoder_heads=2, decoder_heads=2, encoder_ffn_dim=32,
                                     decoder_ffn_dim=32, max_positions=32, shared_embeddings=shared,
                                     tied_output=tied, pre_norm=pre_norm, encoder_final_norm=pre_norm,
                                     decoder_final_norm=pre_norm, embed_norm=embed_norm)


def batch_args(trainer, seed=0):
    rng = np.random.default_rng(seed)
    src = [list(rng.integers(3, 40, size=rng.integers(2, 9))) + [2] for _ in range(3)]
    tgt = [list(rng.integers(3, 40, size=rng.integers(1, 7))) for _ in range(3)]
    s, sl, d, dl, lab = trainer._batch(src, tgt)
    return (s, sl, d, dl, lab, 0.1, 0.0, 0.0, 0, 1.0 / int((lab != -100).sum()))


CONFIGS = {"tied+shared": tiny(), "untied": tiny(shared=False, tied=False),
           "tied, separate vocabularies": tiny(shared=False, tied=True),
           "pre-norm + embed norm": tiny(pre_norm=True, embed_norm=True)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("bucket_mb", [0.0, 0.004, 4.0])
def test_buckets_tile_the_buffer_and_are_final_when_announced(name, bucket_mb):
    model = tformer.Transformer(CONFIGS[name], seed=0)
    trainer = tformer.Trainer(model, dropout=0.0, bucket_mb=bucket_mb)
    graph = trainer._graph
    flat = graph.flat_grad()
    buckets = graph.buckets
    # contiguous, covering the whole buffer
    assert buckets[0][0] == 0 and sum(n for _, n in buckets) == flat.size
    assert all(o1 + n1 == o2 for (o1, n1), (o2, _) in zip(buckets, buckets[1:]))
    if bucket_mb == 0.0:  # one bucket per layer boundary that finishes something
        assert len(buckets) >= CONFIGS[name].decoder_layers + CONFIGS[name].encoder_layers
    if bucket_mb == 4.0:
        assert len(buckets) == 1
    # every gradient is a view into the buffer, at its offset
    for p in graph.trainable:
        g = graph.grad(p)
        off = graph.grad_offset(p)
        assert np.shares_memory(g, flat)
        g[...] = 7.0
        assert np.all(flat[off:off + g.size] == 7.0)
    graph.zero_grad()
    assert not flat.any()

    seen, snapshots = [], {}

    def ready(i):
        o, n = buckets[i]
        seen.append(i)
        snapshots[i] = flat[o:o + n].copy()

    graph.run(*batch_args(trainer), ready)
    assert seen == list(range(len(buckets)))  # each once, in buffer order
    for i, (o, n) in enumerate(buckets):
        np.testing.assert_array_equal(snapshots[i], flat[o:o + n], err_msg=f"bucket {i} changed after its announcement")
    assert np.abs(flat).sum() > 0
    # the last layer's gradients come first, the source embedding (shared/tied) last
    first = min(graph.trainable, key=graph.grad_offset)
    last = max(graph.trainable, key=graph.grad_offset)
    assert first.startswith(("out_proj", "decoder.layers.2", "decoder.final_norm"))
    assert last.startswith(("src_embed", "encoder.embed_norm", "src_positions", "encoder.layers.0"))


def test_callback_does_not_change_the_gradients():
    model = tformer.Transformer(CONFIGS["untied"], seed=0)
    trainer = tformer.Trainer(model, dropout=0.0, bucket_mb=0.0)
    graph = trainer._graph
    args = batch_args(trainer, seed=3)
    graph.zero_grad()
    graph.run(*args)
    plain = graph.flat_grad().copy()
    graph.zero_grad()
    graph.run(*args, lambda i: None)
    np.testing.assert_array_equal(graph.flat_grad(), plain)
    # and the per-parameter views are what the buffer holds
    assert _frozen(model.config) == ["final_logits_bias", "src_positions", "tgt_positions"]


def test_an_error_in_the_callback_reaches_the_caller():
    model = tformer.Transformer(CONFIGS["tied+shared"], seed=0)
    trainer = tformer.Trainer(model, dropout=0.0, bucket_mb=0.0)

    def fail(i):
        raise KeyError(f"bucket {i}")

    with pytest.raises(KeyError, match="bucket 0"):
        trainer._graph.run(*batch_args(trainer), fail)


def test_bad_bucket_size():
    model = tformer.Transformer(CONFIGS["tied+shared"], seed=0)
    with pytest.raises(ValueError, match="bucket_mb must be a number >= 0"):
        tformer.Trainer(model, bucket_mb=-1)
    with pytest.raises(ValueError, match="bucket_mb"):
        tformer.Trainer(model, bucket_mb="4")

"""Resuming training: N steps in one go equal k steps, model.save + trainer.save,
Transformer.load + Trainer.load in a fresh model and trainer, then N - k steps.

The comparison is exact (==, not a tolerance), with dropout on. Nothing in a step depends on
anything but the weights, the AdamW moments, the step count and the settings: the dropout
masks are a counter-based function of (seed, step), the weights and moments are float32 and
saved as float32 (bit for bit), and the kernels' reductions have a fixed order for a fixed
thread count (the same process runs both paths). Any difference, even of one ulp, means some
state was not saved or not restored.

CPU only: the CUDA backend does not implement the training kernels yet."""

import numpy as np
import pytest
import tformer

N_STEPS, RESUME_AT = 6, 3

CONFIGS = {
    # the paper's model: post-norm, sinusoidal positions, one shared embedding matrix
    "post_norm": dict(src_vocab_size=40, tgt_vocab_size=40, d_model=32, encoder_layers=2, decoder_layers=2,
                      encoder_heads=4, decoder_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=48, max_positions=32,
                      pad_id=0, bos_id=2, eos_id=1),
    # mBART-like: pre-norm, learned positions (trained), embedding and final LayerNorms,
    # separate source/target vocabularies and an untied output projection, GELU
    "pre_norm_learned": dict(src_vocab_size=40, tgt_vocab_size=36, d_model=24, encoder_layers=1, decoder_layers=2,
                             encoder_heads=3, decoder_heads=2, encoder_ffn_dim=40, decoder_ffn_dim=32,
                             max_positions=32, positions="learned", pre_norm=True, embed_norm=True,
                             encoder_final_norm=True, decoder_final_norm=True, shared_embeddings=False,
                             tied_output=False, final_logits_bias=True, activation="gelu", pad_id=1, bos_id=0,
                             eos_id=2),
}

SETTINGS = {
    "inverse_sqrt": dict(lr=None, warmup_steps=4, schedule="inverse_sqrt"),
    "cosine": dict(lr=2e-3, warmup_steps=2, schedule="cosine", total_steps=8),
}
COMMON = dict(dropout=0.2, activation_dropout=0.1, label_smoothing=0.1, clip_norm=1.0, weight_decay=0.01, seed=11)


def batches(cfg, n, seed=0):
    """n batches of 6 sentence pairs of lengths 2..9 (sources end with EOS)."""
    rng = np.random.default_rng(seed)
    special = {cfg.pad_id, cfg.eos_id, cfg.bos_id}
    src_tokens = [t for t in range(cfg.src_vocab_size) if t not in special]
    tgt_tokens = [t for t in range(cfg.tgt_vocab_size) if t not in special]
    out = []
    for _ in range(n):
        src = [[int(t) for t in rng.choice(src_tokens, rng.integers(1, 9))] + [cfg.eos_id] for _ in range(6)]
        tgt = [[int(t) for t in rng.choice(tgt_tokens, rng.integers(1, 9))] for _ in range(6)]
        out.append((src, tgt))
    return out


def _run(trainer, data):
    losses, norms = [], []
    for src, tgt in data:
        losses.append(trainer.step(src, tgt))
        norms.append(trainer.last_grad_norm)
    return losses, norms


@pytest.mark.parametrize("schedule", list(SETTINGS))
@pytest.mark.parametrize("arch", list(CONFIGS))
def test_resume_is_exact(tmp_path, arch, schedule):
    cfg = tformer.TransformerConfig(**CONFIGS[arch])
    settings = {**SETTINGS[schedule], **COMMON}
    data = batches(cfg, N_STEPS)

    straight_model = tformer.Transformer(cfg, seed=0)
    straight = tformer.Trainer(straight_model, **settings)
    losses, norms = _run(straight, data)

    model = tformer.Transformer(cfg, seed=0)
    first = tformer.Trainer(model, **settings)
    losses_a, norms_a = _run(first, data[:RESUME_AT])
    model.save(tmp_path / "model")
    first.save(tmp_path / "trainer")
    del first, model

    resumed_model = tformer.Transformer.load(tmp_path / "model")
    resumed = tformer.Trainer.load(tmp_path / "trainer", resumed_model)
    assert resumed.step_count == RESUME_AT
    assert resumed.lr == straight.learning_rate(RESUME_AT + 1)
    for key in ("lr_peak", "betas", "eps", "weight_decay", "warmup_steps", "schedule", "label_smoothing",
                "clip_norm", "dropout", "activation_dropout", "seed", "total_steps"):
        assert getattr(resumed, key) == getattr(straight, key), key
    losses_b, norms_b = _run(resumed, data[RESUME_AT:])

    assert losses_a + losses_b == losses  # exact: see the module docstring
    assert norms_a + norms_b == norms
    assert resumed.step_count == straight.step_count == N_STEPS
    final, expected = resumed_model.parameters(), straight_model.parameters()
    assert sorted(final) == sorted(expected)
    for name in expected:
        assert np.array_equal(final[name], expected[name]), name


def test_dropout_is_on_and_seeded():
    """The resume test is not vacuous: with the same seed two runs are identical, with
    another seed (or dropout off) the losses differ."""
    cfg = tformer.TransformerConfig(**CONFIGS["post_norm"])
    data = batches(cfg, 3, seed=1)

    def losses(**kw):
        trainer = tformer.Trainer(tformer.Transformer(cfg, seed=0), **{**SETTINGS["inverse_sqrt"], **COMMON, **kw})
        return _run(trainer, data)[0]

    base = losses()
    assert losses() == base
    assert losses(seed=12) != base
    no_dropout = losses(dropout=0.0, activation_dropout=0.0)
    assert no_dropout != base
    assert no_dropout[0] != base[0]  # the first step already differs: dropout is in the forward


def test_resume_without_trainer_state_differs(tmp_path):
    """A fresh Trainer on the saved model (moments 0, step 1 again) does not continue the same
    run: Trainer.load is what restores it."""
    cfg = tformer.TransformerConfig(**CONFIGS["post_norm"])
    settings = {**SETTINGS["inverse_sqrt"], **COMMON}
    data = batches(cfg, 4, seed=2)
    model = tformer.Transformer(cfg, seed=0)
    trainer = tformer.Trainer(model, **settings)
    _run(trainer, data[:2])
    model.save(tmp_path / "model")
    continued = _run(trainer, data[2:])[0]
    fresh = tformer.Trainer(tformer.Transformer.load(tmp_path / "model"), **settings)
    assert _run(fresh, data[2:])[0] != continued

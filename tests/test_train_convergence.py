"""Training from scratch: a tiny tformer.Transformer learns to reverse sequences and then
reverses sequences it never saw, every one of them exactly, with greedy decoding.

Task: sources are 3 to 6 tokens from 17 symbols (ids 3..19) + EOS; the target is the source
reversed. 200 random sequences are held out and never trained on (there are ~2.6e7 possible
sequences, so this is generalisation, not memorisation).

Budget: 500 steps of 64 pairs, d_model 64, 2+2 layers, 4 heads, FFN 128, AdamW with a
cosine schedule (peak 3e-3 after 30 steps), label smoothing 0.1, no dropout: about 3.5 s on 2
otherwise idle cores (400 steps measured 2.7 s), far inside a 20 s budget. The settings have
margin: model/data seeds 0-5 all reach 100% held-out accuracy at 400 and at 500 steps, and
300 steps already reach 99.5-100%.

CPU only: the CUDA backend does not implement the training kernels yet."""

import math

import numpy as np
import tformer

VOCAB, FIRST_SYMBOL, MIN_LEN, MAX_LEN = 20, 3, 3, 6
PAD, EOS, BOS = 0, 1, 2
STEPS, BATCH, HELD_OUT = 500, 64, 200
SMOOTHING = 0.1


def _sample(rng, n):
    return [tuple(int(t) for t in rng.integers(FIRST_SYMBOL, VOCAB, rng.integers(MIN_LEN, MAX_LEN + 1)))
            for _ in range(n)]


def _smoothed_entropy(vocab, eps):
    """The smallest possible label-smoothed cross-entropy (torch's definition: the target is
    (1 - eps) one-hot + eps / vocab uniform): the entropy of that target."""
    q_label, q_other = 1.0 - eps + eps / vocab, eps / vocab
    return -(q_label * math.log(q_label) + (vocab - 1) * q_other * math.log(q_other))


def test_learns_to_reverse_sequences():
    cfg = tformer.TransformerConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_model=64, encoder_layers=2,
                                    decoder_layers=2, encoder_heads=4, decoder_heads=4, encoder_ffn_dim=128,
                                    decoder_ffn_dim=128, max_positions=16, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    model = tformer.Transformer(cfg, seed=0)
    trainer = tformer.Trainer(model, lr=3e-3, schedule="cosine", warmup_steps=30, total_steps=STEPS, dropout=0.0,
                              label_smoothing=SMOOTHING, clip_norm=1.0, seed=0)
    rng = np.random.default_rng(1000)
    held_out = sorted(set(_sample(rng, HELD_OUT)))
    excluded = set(held_out)
    held_src = [list(x) + [EOS] for x in held_out]
    held_tgt = [list(reversed(x)) for x in held_out]
    initial = trainer.evaluate(held_src, held_tgt)

    losses = []
    for _ in range(STEPS):
        pairs = [x for x in _sample(rng, BATCH) if x not in excluded]
        losses.append(trainer.step([list(x) + [EOS] for x in pairs], [list(reversed(x)) for x in pairs]))
    assert trainer.step_count == STEPS
    assert all(np.isfinite(losses))

    results = model.generate(held_src, beam_size=1, max_length=MAX_LEN + 1)
    wrong = [(x, r.tokens[0]) for x, r in zip(held_out, results) if r.tokens[0] != list(reversed(x))]
    assert not wrong, f"{len(wrong)} of {len(held_out)} held-out sequences reversed wrongly, e.g. {wrong[:3]}"

    # The held-out loss ends at the floor of label-smoothed cross-entropy (0.594 for 20
    # classes and 0.1): the model is certain, and smoothing is torch's (eps / V on every class).
    floor = _smoothed_entropy(VOCAB, SMOOTHING)
    final = trainer.evaluate(held_src, held_tgt)
    assert initial > 2.5 > floor + 0.02 > final >= floor - 1e-6
    assert np.mean(losses[-20:]) < floor + 0.02

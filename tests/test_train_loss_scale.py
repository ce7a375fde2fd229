"""Loss scaling (tformer.LossScaler, Trainer(loss_scale=...)) and the flat AdamW step, on
float32 so that they are checked on any machine.

* LossScaler's scale sequence equals torch.amp.GradScaler's on the same overflow pattern.
* A power-of-two scale multiplies every gradient exactly (the backward is linear in the
  loss gradient and scaling by 2^k rounds the same way), and the AdamW multiplier divides
  it out exactly: a scaled run is bit-for-bit the unscaled one.
* A huge initial scale makes the float32 gradients overflow: those steps leave the
  parameters and moments untouched (AdamW's step count too), the scale backs off, and the
  remaining steps are bit-for-bit an unscaled run over the same batches.
* The single AdamW launch over the flat buffers equals one AdamW call per parameter.
* The scaler's state survives Trainer.save / Trainer.load.
"""

import math

import numpy as np
import pytest
import torch
import tformer
from tformer import ops

# pre-norm, learned positions, untied output projection (its weights are scaled up below
# to make gradients overflow at a reachable scale)
CFG = dict(src_vocab_size=40, tgt_vocab_size=36, d_model=24, encoder_layers=1, decoder_layers=2, encoder_heads=3,
           decoder_heads=2, encoder_ffn_dim=40, decoder_ffn_dim=32, max_positions=32, positions="learned",
           pre_norm=True, embed_norm=True, encoder_final_norm=True, decoder_final_norm=True,
           shared_embeddings=False, tied_output=False, activation="gelu", pad_id=1, bos_id=0, eos_id=2)
CONSTANT = dict(lr=1e-3, schedule="constant", warmup_steps=0, weight_decay=0.01)


def batches(cfg, n, seed=0):
    rng = np.random.default_rng(seed)
    special = {cfg.pad_id, cfg.eos_id, cfg.bos_id}
    src_tokens = [t for t in range(cfg.src_vocab_size) if t not in special]
    tgt_tokens = [t for t in range(cfg.tgt_vocab_size) if t not in special]
    return [([[int(t) for t in rng.choice(src_tokens, rng.integers(1, 9))] + [cfg.eos_id] for _ in range(5)],
             [[int(t) for t in rng.choice(tgt_tokens, rng.integers(1, 9))] for _ in range(5)]) for _ in range(n)]


def new_model(out_proj_times=1.0):
    cfg = tformer.TransformerConfig(**CFG)
    model = tformer.Transformer(cfg, seed=0)
    if out_proj_times != 1.0:
        model._core.set_parameter("out_proj", np.asarray(model._core.parameter("out_proj")) * out_proj_times)
    return model


def params(model):
    return {n: np.array(model._core.parameter(n)) for n in model._core.parameter_names()}


def moments(trainer):
    return {(n, k): np.array(trainer._graph.moment(n, k)) for n in trainer._graph.trainable for k in (0, 1)}


def assert_same(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{what}: {k} differs"


def torch_scales(flags, **kw):
    """torch.amp.GradScaler's scale after each step of an overflow pattern (True: inf grad)."""
    scaler = torch.amp.GradScaler("cpu", **kw)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    out = []
    for inf in flags:
        opt.zero_grad()
        scaler.scale((p * torch.tensor([math.inf if inf else 1.0])).sum()).backward()
        scaler.step(opt)
        scaler.update()
        out.append(scaler.get_scale())
    return out


# ------------------------------------------------------------------ the scaler alone


@pytest.mark.parametrize("kw", [dict(), dict(init_scale=1000.0, growth_factor=3.0, backoff_factor=0.3,
                                             growth_interval=2)])
def test_scaler_follows_torch_grad_scaler(kw):
    rng = np.random.default_rng(3)
    flags = [bool(x) for x in rng.random(60) < 0.15]
    flags[10:15] = [False] * 5
    kw = {**kw, "growth_interval": kw.get("growth_interval", 4)}
    scaler = tformer.LossScaler(**kw)
    ours = []
    for inf in flags:
        scaler.update(found_inf=inf)
        ours.append(scaler.scale)
    assert ours == torch_scales(flags, **kw)
    assert len(set(ours)) > 3  # it both grew and backed off


def test_scaler_does_not_grow_to_infinity():
    scaler = tformer.LossScaler(init_scale=2.0 ** 127, growth_interval=1)
    scaler.update(found_inf=False)
    assert scaler.scale == 2.0 ** 127
    assert torch_scales([False], init_scale=2.0 ** 127, growth_interval=1) == [2.0 ** 127]


def test_static_scale_never_changes():
    scaler = tformer.LossScaler(init_scale=8.0, dynamic=False, growth_interval=1)
    for inf in (True, False, False):
        scaler.update(found_inf=inf)
    assert scaler.scale == 8.0


# ------------------------------------------------------------------ trainer


def test_flat_adamw_equals_adamw_per_parameter():
    """One AdamW launch over the flat buffers == one ops.adamw call per parameter, bit for bit."""
    model = new_model()
    trainer = tformer.Trainer(model, lr=2e-3, warmup_steps=2, weight_decay=0.01, dropout=0.1, clip_norm=0.5)
    data = batches(model.config, 3)
    for src, tgt in data[:2]:
        trainer.step(src, tgt)
    before, m_before = params(model), moments(trainer)
    trainer.step(*data[2])
    after, m_after = params(model), moments(trainer)
    grads = trainer.gradients()
    multiplier = min(1.0, 0.5 / (trainer.last_grad_norm + 1e-6))
    b1, b2 = trainer.betas
    for name in trainer._graph.trainable:
        p, m, v = ops.adamw(before[name], grads[name], m_before[(name, 0)], m_before[(name, 1)],
                            lr=trainer.learning_rate(3), beta1=b1, beta2=b2, eps=trainer.eps, weight_decay=0.01,
                            step=3, grad_scale=multiplier)
        assert np.array_equal(p, after[name]), name
        assert np.array_equal(m, m_after[(name, 0)]), name
        assert np.array_equal(v, m_after[(name, 1)]), name
    for name in set(before) - set(trainer._graph.trainable):  # frozen: untouched
        assert np.array_equal(before[name], after[name]), name


@pytest.mark.parametrize("loss_scale", [2.0 ** 12, "dynamic"])
def test_power_of_two_scale_is_exact(loss_scale):
    data = batches(tformer.TransformerConfig(**CFG), 4, seed=1)
    runs = []
    for scale in (None, loss_scale):
        model = new_model()
        trainer = tformer.Trainer(model, lr=None, warmup_steps=3, dropout=0.1, activation_dropout=0.1,
                                  clip_norm=1.0, loss_scale=scale)
        losses = [trainer.step(src, tgt) for src, tgt in data]
        runs.append((losses, params(model), moments(trainer), trainer.gradients()))
        assert not trainer.last_step_skipped
    assert runs[0][0] == runs[1][0]
    assert_same(runs[0][1], runs[1][1], "parameters")
    assert_same(runs[0][2], runs[1][2], "moments")
    assert_same(runs[0][3], runs[1][3], "gradients (scale divided out)")


def test_overflow_skips_the_step_and_backs_off():
    """From 2^127 the float32 gradients overflow: skipped steps change nothing but the scale,
    which halves until the gradients fit; then the run equals an unscaled one on the batches
    that were not skipped (constant learning rate, no dropout: nothing else depends on the
    step count)."""
    settings = dict(**CONSTANT, dropout=0.0, clip_norm=None)
    data = batches(tformer.TransformerConfig(**CFG), 14, seed=2)
    model = new_model(out_proj_times=1e4)
    scaler = tformer.LossScaler(init_scale=2.0 ** 127, growth_interval=3)
    trainer = tformer.Trainer(model, **settings, loss_scale=scaler)
    flags, scales = [], []
    for step, (src, tgt) in enumerate(data, 1):
        before, m_before, opt_steps = params(model), moments(trainer), trainer.optimizer_steps
        loss = trainer.step(src, tgt)
        assert np.isfinite(loss)
        flags.append(trainer.last_step_skipped)
        scales.append(trainer.loss_scale)
        assert trainer.step_count == step
        if trainer.last_step_skipped:
            assert not math.isfinite(trainer.last_grad_norm)
            assert trainer.optimizer_steps == opt_steps
            assert_same(before, params(model), "parameters after a skipped step")
            assert_same(m_before, moments(trainer), "moments after a skipped step")
        else:
            assert trainer.optimizer_steps == opt_steps + 1
            assert not np.array_equal(before["out_proj"], params(model)["out_proj"])
    assert flags[0] and not all(flags), flags  # it overflowed, then recovered
    assert trainer.optimizer_steps == flags.count(False)
    assert scales == torch_scales(flags, init_scale=2.0 ** 127, growth_interval=3)

    reference = new_model(out_proj_times=1e4)
    plain = tformer.Trainer(reference, **settings)
    for (src, tgt), skipped in zip(data, flags):
        if not skipped:
            plain.step(src, tgt)
    assert_same(params(reference), params(model), "parameters against the unscaled run")
    assert_same(moments(plain), moments(trainer), "moments against the unscaled run")


def test_unscaled_training_does_not_skip():
    """Without a scaler an overflow is not a skip (today's behaviour: the update happens)."""
    model = new_model()
    trainer = tformer.Trainer(model, dropout=0.0)
    trainer.step(*batches(model.config, 1)[0])
    assert trainer.scaler is None and trainer.loss_scale == 1.0 and not trainer.last_step_skipped


def test_scaler_state_resumes(tmp_path):
    settings = dict(**CONSTANT, dropout=0.1, clip_norm=None)
    data = batches(tformer.TransformerConfig(**CFG), 10, seed=4)

    def new_trainer(model):
        return tformer.Trainer(model, **settings, loss_scale=tformer.LossScaler(init_scale=2.0 ** 127,
                                                                                  growth_interval=2))

    straight_model = new_model(out_proj_times=1e4)
    straight = new_trainer(straight_model)
    losses = [straight.step(src, tgt) for src, tgt in data]

    model = new_model(out_proj_times=1e4)
    first = new_trainer(model)
    losses_a = [first.step(src, tgt) for src, tgt in data[:4]]
    assert first.optimizer_steps < first.step_count  # the checkpoint holds skipped steps
    model.save(tmp_path / "model")
    first.save(tmp_path / "trainer")
    saved_scale, saved_tracker = first.scaler.scale, first.scaler.growth_tracker
    del first, model

    model = tformer.Transformer.load(tmp_path / "model")
    second = tformer.Trainer.load(tmp_path / "trainer", model)
    assert (second.scaler.scale, second.scaler.growth_tracker) == (saved_scale, saved_tracker)
    assert second.scaler.growth_interval == 2
    losses_b = [second.step(src, tgt) for src, tgt in data[4:]]
    assert losses_a + losses_b == losses
    assert (second.step_count, second.optimizer_steps, second.loss_scale) == \
        (straight.step_count, straight.optimizer_steps, straight.loss_scale)
    assert_same(params(straight_model), params(model), "parameters")
    assert_same(moments(straight), moments(second), "moments")


def test_set_parameter_during_training_is_picked_up():
    """The trainer's weights live in a flat buffer; a parameter replaced with set_parameter
    is taken back into it (the next update starts from the new value)."""
    model = new_model()
    trainer = tformer.Trainer(model, **CONSTANT, dropout=0.0)
    data = batches(model.config, 2)
    trainer.step(*data[0])
    zeros = np.zeros_like(model._core.parameter("decoder.layers.0.ffn.fc1.weight"))
    model._core.set_parameter("decoder.layers.0.ffn.fc1.weight", zeros)
    trainer.step(*data[1])
    after = np.asarray(model._core.parameter("decoder.layers.0.ffn.fc1.weight"))
    assert np.abs(after).max() <= 2e-3  # one AdamW step (lr 1e-3) away from zero, not the old weights
    assert np.abs(after).max() > 0

"""Bad input to tformer.Trainer raises a Python exception of the documented type whose
message names the problem. Types are checked strictly; wording by a substring."""

import json

import numpy as np
import pytest
import tformer

CFG = dict(src_vocab_size=30, tgt_vocab_size=25, d_model=16, encoder_layers=1, decoder_layers=1, encoder_heads=2,
           decoder_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_positions=16, shared_embeddings=False,
           pad_id=0, bos_id=2, eos_id=1)
SRC = [[5, 6, 7, 1], [8, 9, 1]]
TGT = [[10, 11], [12, 13, 14]]


@pytest.fixture(scope="module")
def model():
    return tformer.Transformer(tformer.TransformerConfig(**CFG), seed=0)


@pytest.fixture
def trainer(model):
    return tformer.Trainer(model, dropout=0.0)


def test_good_batch_trains(trainer):
    """The batch the other tests spoil is a good one."""
    assert np.isfinite(trainer.step(SRC, TGT))


# ---- batches ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["step", "evaluate"])
def test_mismatched_batch_sizes(trainer, method):
    with pytest.raises(ValueError, match="src_ids has 2 sentences but tgt_ids has 3"):
        getattr(trainer, method)(SRC, TGT + [[15]])
    with pytest.raises(ValueError, match="src_ids has 1 sentences but tgt_ids has 2"):
        getattr(trainer, method)(SRC[:1], TGT)


def test_empty_target(trainer):
    with pytest.raises(ValueError, match="empty target sentence"):
        trainer.step(SRC, [[10], []])
    assert trainer.step_count == 0


def test_empty_source(trainer):
    with pytest.raises(ValueError, match="src_ids: sentence 1 is empty"):
        trainer.step([[5, 1], []], TGT)


def test_empty_batch(trainer):
    with pytest.raises(ValueError, match="src_ids: empty batch"):
        trainer.step([], [])


@pytest.mark.parametrize("bad", [30, 1000, -1])
def test_source_id_out_of_range(trainer, bad):
    with pytest.raises(ValueError, match=rf"src_ids: token id {bad}\b.*outside the vocabulary \[0, 30\)"):
        trainer.step([[5, bad, 1], [8, 9, 1]], TGT)
    assert trainer.step_count == 0


@pytest.mark.parametrize("bad", [25, 29, -3])
def test_target_id_out_of_range(trainer, bad):
    """The target vocabulary (25) is smaller than the source's (30): 25..29 are valid source
    ids but not target ids."""
    with pytest.raises(ValueError, match=rf"tgt_ids: token id {bad}\b.*outside the vocabulary \[0, 25\)"):
        trainer.step(SRC, [[10, bad], [12]])
    assert trainer.step_count == 0


def test_float_ids(trainer):
    with pytest.raises(TypeError, match="tgt_ids: token ids must be integers"):
        trainer.step(SRC, [[10.0, 11.0], [12.0]])
    with pytest.raises(TypeError, match="src_ids: token ids must be integers"):
        trainer.step(np.array([[5.0, 1.0]]), [[10]])


def test_target_not_a_list(trainer):
    with pytest.raises(TypeError, match="tgt_ids must be a list of token-id lists"):
        trainer.step(SRC, "10 11")


def test_source_too_long_for_the_positions_table(trainer):
    with pytest.raises(ValueError, match="src_ids: sentence 0 has 20 tokens, more than the positions table"):
        trainer.step([[5] * 19 + [1]], [[10]])


@pytest.mark.parametrize("micro_batches", [0, -1, 1.5, True])
def test_bad_micro_batches(trainer, micro_batches):
    with pytest.raises(ValueError, match="micro_batches must be an int >= 1"):
        trainer.step(SRC, TGT, micro_batches=micro_batches)


# ---- settings --------------------------------------------------------------------------

@pytest.mark.parametrize("lr", [0, 0.0, -1e-3])
def test_lr_not_positive(model, lr):
    with pytest.raises(ValueError, match="lr must be a number > 0"):
        tformer.Trainer(model, lr=lr)


@pytest.mark.parametrize("schedule", ["linear", "Cosine", ""])
def test_unknown_schedule(model, schedule):
    with pytest.raises(ValueError, match=f"unknown schedule '{schedule}'"):
        tformer.Trainer(model, lr=1e-3, schedule=schedule)


def test_cosine_without_total_steps(model):
    with pytest.raises(ValueError, match=r"total_steps \(0\) must be larger than warmup_steps \(100\)"):
        tformer.Trainer(model, lr=1e-3, schedule="cosine", warmup_steps=100)
    with pytest.raises(ValueError, match=r"total_steps \(50\) must be larger than warmup_steps \(100\)"):
        tformer.Trainer(model, lr=1e-3, schedule="cosine", warmup_steps=100, total_steps=50)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_schedule_needing_lr_without_lr(model, schedule):
    with pytest.raises(ValueError, match="lr must be a number > 0 with this schedule"):
        tformer.Trainer(model, schedule=schedule, total_steps=10, warmup_steps=1)


def test_inverse_sqrt_without_warmup(model):
    with pytest.raises(ValueError, match="warmup_steps must be >= 1 with schedule 'inverse_sqrt'"):
        tformer.Trainer(model, warmup_steps=0)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_label_smoothing_outside_range(model, value):
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0.0, 1.0\)"):
        tformer.Trainer(model, label_smoothing=value)


@pytest.mark.parametrize("key", ["dropout", "activation_dropout"])
@pytest.mark.parametrize("value", [1.0, 2.0, -0.5])
def test_dropout_outside_range(model, key, value):
    with pytest.raises(ValueError, match=rf"{key} must be in \[0.0, 1.0\)"):
        tformer.Trainer(model, **{key: value})


def test_dropout_not_a_number(model):
    with pytest.raises(TypeError, match="dropout must be a number"):
        tformer.Trainer(model, dropout="0.1")


@pytest.mark.parametrize("clip_norm", [0.0, -1.0])
def test_clip_norm_not_positive(model, clip_norm):
    with pytest.raises(ValueError, match=r"clip_norm must be in \(0.0, inf\)"):
        tformer.Trainer(model, clip_norm=clip_norm)


@pytest.mark.parametrize("betas", [(0.9,), 0.9, (0.9, 0.98, 0.1)])
def test_betas_not_a_pair(model, betas):
    with pytest.raises(ValueError, match="betas must be a pair"):
        tformer.Trainer(model, betas=betas)


def test_beta_outside_range(model):
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0.0, 1.0\)"):
        tformer.Trainer(model, betas=(0.9, 1.0))


@pytest.mark.parametrize("eps", [0.0, -1e-8])
def test_eps_not_positive(model, eps):
    with pytest.raises(ValueError, match=r"eps must be in \(0.0, inf\)"):
        tformer.Trainer(model, eps=eps)


def test_negative_weight_decay(model):
    with pytest.raises(ValueError, match=r"weight_decay must be in \[0.0, inf\)"):
        tformer.Trainer(model, weight_decay=-0.01)


def test_warmup_not_an_int(model):
    with pytest.raises(TypeError, match="warmup_steps must be an int"):
        tformer.Trainer(model, warmup_steps=40.5)


@pytest.mark.parametrize("not_a_model", [None, "model.safetensors", {"src_embed": np.zeros((2, 2))}])
def test_first_argument_not_a_model(not_a_model):
    with pytest.raises(TypeError, match="model must be a tformer.Transformer, got"):
        tformer.Trainer(not_a_model)


def test_core_model_is_not_a_model(model):
    with pytest.raises(TypeError, match="model must be a tformer.Transformer, got Model"):
        tformer.Trainer(model._core)


def test_failed_settings_leave_the_model_untouched(model):
    before = model.parameters()
    with pytest.raises(ValueError):
        tformer.Trainer(model, lr=-1.0)
    after = model.parameters()
    assert all(np.array_equal(before[n], after[n]) for n in before)


# ---- checkpoints -----------------------------------------------------------------------

def test_load_missing_directory(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="trainer.json not found"):
        tformer.Trainer.load(tmp_path / "nowhere", model)


def test_load_model_directory_is_not_a_trainer(model, tmp_path):
    """model.save's directory has config.json, not trainer.json."""
    model.save(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="not a saved tformer Trainer"):
        tformer.Trainer.load(tmp_path / "model", model)


def test_load_for_another_config(model, tmp_path):
    tformer.Trainer(model).save(tmp_path / "trainer")
    other = tformer.Transformer(tformer.TransformerConfig(**{**CFG, "d_model": 24}), seed=0)
    with pytest.raises(ValueError, match="is for another model configuration"):
        tformer.Trainer.load(tmp_path / "trainer", other)
    deeper = tformer.Transformer(tformer.TransformerConfig(**{**CFG, "decoder_layers": 2}), seed=0)
    with pytest.raises(ValueError, match=r"is for another model configuration \(first difference: 'decoder.layers.1"):
        tformer.Trainer.load(tmp_path / "trainer", deeper)


def test_load_wrong_format(model, tmp_path):
    tformer.Trainer(model).save(tmp_path / "trainer")
    meta_path = tmp_path / "trainer" / "trainer.json"
    meta = json.loads(meta_path.read_text())
    meta["format"] = "something-else"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not a tformer Trainer checkpoint"):
        tformer.Trainer.load(tmp_path / "trainer", model)


def test_load_into_a_non_model(model, tmp_path):
    tformer.Trainer(model).save(tmp_path / "trainer")
    with pytest.raises(TypeError, match="model must be a tformer.Transformer"):
        tformer.Trainer.load(tmp_path / "trainer", "model")


def test_lr_of_the_wrong_type_is_a_type_error():
    import tformer

    cfg = tformer.TransformerConfig(src_vocab_size=20, tgt_vocab_size=20, d_model=16, encoder_layers=1,
                                    decoder_layers=1, encoder_heads=2, decoder_heads=2, encoder_ffn_dim=16,
                                    decoder_ffn_dim=16, max_positions=16, pad_id=0, eos_id=1, bos_id=2)
    with pytest.raises(TypeError, match="lr"):
        tformer.Trainer(tformer.Transformer(cfg, seed=0), lr="1e-3")

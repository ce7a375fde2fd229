"""tformer.Trainer on T5 against PyTorch: random-weight transformers T5 / mT5 checkpoints
(t5_testlib's, dropout 0), trained one step by tformer (float32,
C++) and by transformers + torch autograd (float64, train mode) on the same padded batch.

The shapes of t5_testlib: T5 v1.0 (ReLU FFN, tied output through d_model**-0.5, one shared
matrix), v1.1 / flan-T5 and mT5 (gated-GELU FFN, untied lm_head), num_heads * d_kv != d_model,
unequal layer counts, and sentences long enough that relative distances reach the log-spaced
buckets and the last one (max_distance is small).

Checked: the loss, the set of trained parameters (T5 has no biases; one relative position
table per stack), every parameter's gradient (<= 1e-4 relative per tensor in float32 against
float64 autograd), the global gradient norm, that a few steps lower the loss, and T5's dropout
placement (transformers' dropout modules given tformer's masks)."""

import math

import numpy as np
import pytest
import torch
import tformer

import t5_testlib as t5
import tf_testlib as lib

SMOOTHING = 0.1
IGNORE = -100
PAD, EOS, START = t5.PAD, t5.EOS, t5.START  # T5: the decoder starts from the pad id
# Sources longer than every spec's relative_attention_max_distance (the far buckets).
SRC_LENS = [6, 2, 27, 4, 1]
TGT_LENS = [3, 26, 1, 5, 2]


def build_t5(name, directory):
    """The float64 transformers reference in train mode (dropout 0) of a checkpoint saved in
    `directory` (t5_testlib's random-weight specs)."""
    t5.save(t5.build(name), name, directory)
    return t5.reference(name, directory).train()


def make_batch(vocab, seed):
    rng = np.random.default_rng(seed)
    avoid = {PAD, EOS, START}
    src = [lib.random_tokens(rng, n - 1, vocab, avoid) + [EOS] for n in SRC_LENS]
    tgt = [lib.random_tokens(rng, n, vocab, avoid) for n in TGT_LENS]
    return src, tgt


def hf_loss(ref, src, tgt):
    """The loss of transformers' view of the batch: decoder input [start] + target, labels
    target + [eos] (-100 at padding), right padding with attention masks."""
    src_ids, src_mask = lib.pad_batch(src, PAD)
    dec_ids, dec_mask = lib.pad_batch([[START] + t for t in tgt], PAD)
    labels = np.full(dec_ids.shape, IGNORE, dtype=np.int64)
    for i, t in enumerate(tgt):
        labels[i, :len(t) + 1] = t + [EOS]
    as_t = torch.from_numpy
    logits = ref(input_ids=as_t(src_ids), attention_mask=as_t(src_mask), decoder_input_ids=as_t(dec_ids),
                 decoder_attention_mask=as_t(dec_mask)).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), as_t(labels).reshape(-1),
                                             ignore_index=IGNORE, label_smoothing=SMOOTHING)


def expected_grads(ref):
    """tformer name -> float64 gradient, from the transformers model's own structure."""
    g = {n: p.grad.numpy() for n, p in ref.named_parameters() if p.grad is not None}
    out = {"src_embed": g["shared.weight"]}
    if ref.lm_head.weight is not ref.shared.weight:
        out["out_proj"] = g["lm_head.weight"]
    gated = ref.config.is_gated_act
    for side, layers in (("encoder", ref.config.num_layers), ("decoder", ref.config.num_decoder_layers)):
        out[f"{side}.relative_attention_bias"] = g[f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        out[f"{side}.final_norm.gamma"] = g[f"{side}.final_layer_norm.weight"]
        for i in range(layers):
            hf, ours = f"{side}.block.{i}.layer", f"{side}.layers.{i}"
            out[f"{ours}.self_attn.qkv.weight"] = np.concatenate([g[f"{hf}.0.SelfAttention.{x}.weight"] for x in "qkv"])
            out[f"{ours}.self_attn.out.weight"] = g[f"{hf}.0.SelfAttention.o.weight"]
            out[f"{ours}.self_attn_norm.gamma"] = g[f"{hf}.0.layer_norm.weight"]
            ff = 1
            if side == "decoder":
                ff = 2
                out[f"{ours}.cross_attn.q.weight"] = g[f"{hf}.1.EncDecAttention.q.weight"]
                out[f"{ours}.cross_attn.kv.weight"] = np.concatenate([g[f"{hf}.1.EncDecAttention.{x}.weight"]
                                                                     for x in "kv"])
                out[f"{ours}.cross_attn.out.weight"] = g[f"{hf}.1.EncDecAttention.o.weight"]
                out[f"{ours}.cross_attn_norm.gamma"] = g[f"{hf}.1.layer_norm.weight"]
            dense = f"{hf}.{ff}.DenseReluDense"
            out[f"{ours}.ffn.fc1.weight"] = (np.concatenate([g[f"{dense}.wi_0.weight"], g[f"{dense}.wi_1.weight"]])
                                             if gated else g[f"{dense}.wi.weight"])
            out[f"{ours}.ffn.fc2.weight"] = g[f"{dense}.wo.weight"]
            out[f"{ours}.ffn_norm.gamma"] = g[f"{hf}.{ff}.layer_norm.weight"]
    return out


def trainer_for(model, lr=1e-3):
    return tformer.Trainer(model, lr=lr, schedule="constant", warmup_steps=1, dropout=0.0, clip_norm=None,
                           label_smoothing=SMOOTHING, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0)


@pytest.mark.parametrize("name", t5.T5_NAMES)
def test_t5_gradients_match_torch(tmp_path, name, device):
    ref = build_t5(name, tmp_path)
    src, tgt = make_batch(ref.config.vocab_size, seed=1)
    assert max(SRC_LENS) > ref.config.relative_attention_max_distance  # the far buckets are reached
    loss_ref = hf_loss(ref, src, tgt)
    loss_ref.backward()
    expected = expected_grads(ref)
    norm_ref = math.sqrt(sum(float((p.grad ** 2).sum()) for p in ref.parameters() if p.grad is not None))

    model = tformer.from_huggingface(str(tmp_path), dtype="float32", device=device)
    trainer = trainer_for(model)
    loss = trainer.step(src, tgt)
    assert loss == pytest.approx(float(loss_ref.detach()), rel=1e-5)
    grads = trainer.gradients()
    assert sorted(grads) == sorted(expected)
    for n, ref_g in expected.items():
        assert grads[n].shape == ref_g.shape, n
        err = lib.rel_err(grads[n], ref_g)
        assert err <= 1e-4, f"{name} gradient {n}: max|a-b|/max|b| = {err:.2e}"
    # The pad row of the shared matrix is trained too (T5's embedding has no padding_idx):
    # the decoder starts from the pad id.
    assert np.any(grads["src_embed"][PAD] != 0.0)
    assert trainer.last_grad_norm == pytest.approx(norm_ref, rel=1e-5)


@pytest.mark.parametrize("name", t5.T5_NAMES)
def test_t5_training_lowers_the_loss(tmp_path, name):
    build_t5(name, tmp_path)
    model = tformer.from_huggingface(str(tmp_path), dtype="float32")
    src, tgt = make_batch(t5.T5_SPECS[name]["config"]["vocab_size"], seed=2)
    trainer = trainer_for(model, lr=3e-3)
    losses = [trainer.step(src, tgt) for _ in range(8)]
    assert losses[-1] < 0.8 * losses[0], losses


def dropout_masks(p, seed, sites):
    """tformer's dropout masks (already divided by 1 - p) of consecutive sites: site k covers
    the counter range that follows site k - 1's, as a training step takes them."""
    from tformer import ops
    masks, offset = [], 0
    for shape in sites:
        n = int(np.prod(shape))
        masks.append(ops.dropout(np.ones(n, np.float32), p, seed, offset).reshape(shape).astype(np.float64))
        offset += n
    return masks


@pytest.mark.parametrize("name", ["t5_v10", "t5_v11"])
def test_t5_dropout_sites_match_torch(tmp_path, name, device):
    """T5's dropout placement: after the embeddings, on each sublayer's output before the
    residual add, after the FFN activation (gated: after act * linear), and after each stack's
    final norm. transformers' own nn.Dropout modules are given tformer's masks (in the order
    they run, which is the order the step draws them) and the loss and gradients must agree."""
    p = 0.25
    ref = build_t5(name, tmp_path)
    src, tgt = make_batch(ref.config.vocab_size, seed=3)
    cfg = ref.config
    B, S, T = len(src), max(SRC_LENS), max(TGT_LENS) + 1
    D, F = cfg.d_model, cfg.d_ff
    sites = [(B, S, D)] + [(B, S, D), (B, S, F), (B, S, D)] * cfg.num_layers + [(B, S, D)]
    sites += [(B, T, D)] + [(B, T, D), (B, T, D), (B, T, F), (B, T, D)] * cfg.num_decoder_layers + [(B, T, D)]

    model = tformer.from_huggingface(str(tmp_path), dtype="float32", device=device)
    trainer = tformer.Trainer(model, lr=1e-3, schedule="constant", warmup_steps=1, dropout=p, activation_dropout=p,
                              clip_norm=None, label_smoothing=SMOOTHING, seed=7)
    masks = iter(dropout_masks(p, trainer._step_seed(), sites))

    def apply_mask(module, inputs, out):
        return out * torch.from_numpy(next(masks)).reshape(out.shape)

    hooks = [m.register_forward_hook(apply_mask) for m in ref.modules() if isinstance(m, torch.nn.Dropout)]
    try:
        loss_ref = hf_loss(ref, src, tgt)
    finally:
        for h in hooks:
            h.remove()
    assert next(masks, None) is None, "transformers ran fewer dropout sites than the step draws"
    loss_ref.backward()
    expected = expected_grads(ref)

    loss = trainer.step(src, tgt)
    assert loss == pytest.approx(float(loss_ref.detach()), rel=1e-5)
    grads = trainer.gradients()
    for n, ref_g in expected.items():
        err = lib.rel_err(grads[n], ref_g)
        assert err <= 1e-4, f"{name} gradient {n} with dropout: max|a-b|/max|b| = {err:.2e}"


def test_t5_micro_batches_give_the_same_gradients(tmp_path):
    """micro_batches=3: each part has its own lengths, so its own relative bias span; the
    summed gradients are the whole batch's."""
    name = "t5_v11"
    ref = build_t5(name, tmp_path)
    src, tgt = make_batch(ref.config.vocab_size, seed=4)
    loss_ref = hf_loss(ref, src, tgt)
    loss_ref.backward()
    expected = expected_grads(ref)
    trainer = trainer_for(tformer.from_huggingface(str(tmp_path), dtype="float32"))
    loss = trainer.step(src, tgt, micro_batches=3)
    assert loss == pytest.approx(float(loss_ref.detach()), rel=1e-5)
    grads = trainer.gradients()
    for n, ref_g in expected.items():
        err = lib.rel_err(grads[n], ref_g)
        assert err <= 1e-4, f"micro-batch gradient {n}: max|a-b|/max|b| = {err:.2e}"

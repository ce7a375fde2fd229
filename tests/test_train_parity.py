"""tformer.Trainer against PyTorch: the same random-weight Hugging Face checkpoint trained by
tformer (float32, C++) and by transformers + torch autograd + torch.optim.AdamW (float64,
train mode, dropout 0 in the config) on the same padded batch.

Checked: the loss, the set of trained parameters, every parameter's gradient (fused q/k/v and
k/v included; tied embeddings as one gradient), the global gradient norm, the weights after
AdamW steps, the losses of several steps, gradient clipping, micro-batches, evaluate() and
the learning-rate schedules.

The gradient and AdamW parity tests take the `device` fixture: on a machine with a GPU they run
the same step on "cuda" (float32) against the same float64 CPU reference."""

import copy
import math

import numpy as np
import pytest
import torch
import tformer

import tf_testlib as lib

SMOOTHING = 0.1
IGNORE = -100
# Sources of different lengths (one is EOS alone) and targets of different lengths (one has
# a single token): every row of the batch is padded somewhere, on both sides.
SRC_LENS = [6, 2, 9, 4, 1]
TGT_LENS = [3, 7, 1, 5, 2]
# AdamW settings of both sides (the Trainer's defaults, plus weight decay).
ADAMW = dict(betas=(0.9, 0.98), eps=1e-9, weight_decay=0.01)
LR = 1e-3


# ---------------------------------------------------------------------------------------
# Batches and the PyTorch reference
# ---------------------------------------------------------------------------------------

def make_batch(name, seed=0, src_lens=SRC_LENS, tgt_lens=TGT_LENS):
    """(sources ending in EOS, targets without special tokens), as Trainer.step takes them."""
    spec = lib.MODEL_SPECS[name]
    src_v, tgt_v = lib.vocab_sizes(name)
    rng = np.random.default_rng(seed)
    avoid = {spec["pad"], spec["eos"], spec["start"]}
    src = [lib.random_tokens(rng, n - 1, src_v, avoid) + [spec["eos"]] for n in src_lens]
    tgt = [lib.random_tokens(rng, n, tgt_v, avoid) for n in tgt_lens]
    return src, tgt


def hf_inputs(name, src, tgt):
    """transformers' view of the batch: decoder input [start] + target, labels target + [eos]
    (-100 at padding), right padding with attention masks."""
    spec = lib.MODEL_SPECS[name]
    src_ids, src_mask = lib.pad_batch(src, spec["pad"])
    dec_ids, dec_mask = lib.pad_batch([[spec["start"]] + t for t in tgt], spec["pad"])
    labels = np.full(dec_ids.shape, IGNORE, dtype=np.int64)
    for i, t in enumerate(tgt):
        labels[i, :len(t) + 1] = t + [spec["eos"]]
    as_t = torch.from_numpy
    return dict(input_ids=as_t(src_ids), attention_mask=as_t(src_mask), decoder_input_ids=as_t(dec_ids),
                decoder_attention_mask=as_t(dec_mask)), as_t(labels)


def hf_loss(ref, inputs, labels, smoothing=SMOOTHING):
    logits = ref(**inputs).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=IGNORE, label_smoothing=smoothing)


def torch_step(ref, opt, inputs, labels, clip_norm=None):
    """One reference step; returns (loss, global gradient norm before clipping)."""
    opt.zero_grad(set_to_none=True)
    loss = hf_loss(ref, inputs, labels)
    loss.backward()
    params = [p for p in ref.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, clip_norm if clip_norm is not None else math.inf)
    opt.step()
    return float(loss.detach()), float(norm)


def hf_tensors(ref, what):
    """HF name (without 'model.') -> float64 numpy: 'grad' or 'weight' of every trained
    parameter. Tied parameters appear under each of their names with one shared value."""
    out = {}
    for n, p in ref.named_parameters(remove_duplicate=False):
        if not p.requires_grad:
            continue
        t = p.grad if what == "grad" else p.detach()
        if t is not None:
            out[n[len("model."):] if n.startswith("model.") else n] = t.detach().numpy().astype(np.float64)
    return out


def to_tformer(ref, hf):
    """HF tensors (hf_tensors of `ref`) -> tformer names. The structure is read from the
    transformers model alone (which Parameters are one object, which are learned), so the
    expected set of trained tformer parameters does not come from tformer: q/k/v fused as
    concat(q, k, v) rows, cross-attention k/v as concat(k, v)."""
    out = {}
    enc_tok, dec_tok = ref.model.encoder.embed_tokens.weight, ref.model.decoder.embed_tokens.weight
    if enc_tok is dec_tok:  # one matrix for source, target (and output, when tied)
        out["src_embed"] = hf["encoder.embed_tokens.weight"]
    else:
        out["src_embed"] = hf["encoder.embed_tokens.weight"]
        out["tgt_embed"] = hf["decoder.embed_tokens.weight"]
    if ref.lm_head.weight is not dec_tok:
        out["out_proj"] = hf["lm_head.weight"]
    for side, short in (("encoder", "src"), ("decoder", "tgt")):
        if f"{side}.embed_positions.weight" in hf:  # learned positions (BART, mBART)
            out[f"{short}_positions"] = hf[f"{side}.embed_positions.weight"]
        for ours, theirs in (("embed_norm", "layernorm_embedding"), ("final_norm", "layer_norm")):
            if f"{side}.{theirs}.weight" in hf:
                out[f"{side}.{ours}.gamma"] = hf[f"{side}.{theirs}.weight"]
                out[f"{side}.{ours}.beta"] = hf[f"{side}.{theirs}.bias"]
        layers = {int(n.split(".")[2]) for n in hf if n.startswith(f"{side}.layers.")}
        for i in sorted(layers):
            a = f"{side}.layers.{i}"
            for k in ("weight", "bias"):
                out[f"{a}.self_attn.qkv.{k}"] = np.concatenate([hf[f"{a}.self_attn.{x}_proj.{k}"] for x in "qkv"])
                out[f"{a}.self_attn.out.{k}"] = hf[f"{a}.self_attn.out_proj.{k}"]
                out[f"{a}.ffn.fc1.{k}"] = hf[f"{a}.fc1.{k}"]
                out[f"{a}.ffn.fc2.{k}"] = hf[f"{a}.fc2.{k}"]
                if side == "decoder":
                    out[f"{a}.cross_attn.q.{k}"] = hf[f"{a}.encoder_attn.q_proj.{k}"]
                    out[f"{a}.cross_attn.kv.{k}"] = np.concatenate([hf[f"{a}.encoder_attn.{x}_proj.{k}"] for x in "kv"])
                    out[f"{a}.cross_attn.out.{k}"] = hf[f"{a}.encoder_attn.out_proj.{k}"]
            norms = [("self_attn_norm", "self_attn_layer_norm"), ("ffn_norm", "final_layer_norm")]
            if side == "decoder":
                norms.append(("cross_attn_norm", "encoder_attn_layer_norm"))
            for ours, theirs in norms:
                out[f"{a}.{ours}.gamma"] = hf[f"{a}.{theirs}.weight"]
                out[f"{a}.{ours}.beta"] = hf[f"{a}.{theirs}.bias"]
    return out


def pair(zoo, name, device="cpu"):
    """(float64 transformers model in train mode, float32 tformer model) with the same weights,
    both fresh (training changes them)."""
    ckpt = zoo.get(name)
    ref = copy.deepcopy(ckpt.ref).train()
    if ckpt.spec["family"] == "marian":
        # MarianSinusoidalPositionalEmbedding is built frozen (nn.Embedding(_freeze=True)), but
        # transformers 5.24's from_pretrained hands the table back with requires_grad=True.
        # The table is a fixed sinusoid (it is not even stored in the checkpoint), so it is
        # frozen again here, as in a freshly built model.
        for stack in (ref.model.encoder, ref.model.decoder):
            stack.embed_positions.weight.requires_grad_(False)
    for key in ("dropout", "attention_dropout", "activation_dropout"):
        assert getattr(ref.config, key) == 0.0, key
    model = tformer.from_huggingface(str(ckpt.dir), dtype="float32", device=device)
    return ref, model


def torch_adamw(ref, lr=LR):
    return torch.optim.AdamW(ref.parameters(), lr=lr, **ADAMW)


def trainer_for(model, clip_norm=None, lr=LR):
    return tformer.Trainer(model, lr=lr, schedule="constant", warmup_steps=1, dropout=0.0, clip_norm=clip_norm,
                           label_smoothing=SMOOTHING, **ADAMW)


def assert_tensors_close(actual: dict, expected: dict, rel, what):
    assert sorted(actual) == sorted(expected), f"{what}: names differ"
    worst = max(((lib.rel_err(actual[n], expected[n]), n) for n in expected), key=lambda t: t[0])
    for n in expected:
        assert actual[n].shape == expected[n].shape, f"{what} {n}: shape {actual[n].shape} != {expected[n].shape}"
        assert np.all(np.isfinite(actual[n])), f"{what} {n}: non-finite values"
        err = lib.rel_err(actual[n], expected[n])
        assert err <= rel, f"{what} {n}: max|a-b|/max|b| = {err:.2e} > {rel:.0e} (worst: {worst[1]} {worst[0]:.2e})"


# AdamW's step is lr * m / (sqrt(v) + eps): on the first step lr * g / (|g| + eps), whatever
# the size of g. An element whose gradient is below the float32 resolution of its tensor takes a
# step whose size and sign are decided by rounding noise, on both sides alike (torch in float32
# does the same). Such elements exist: d loss / d b_k of an attention key bias is 0 in exact
# arithmetic (softmax ignores a constant added to a row of scores), float64 autograd gives
# ~1e-17 and float32 ~1e-7 of noise; and parts of W_k cancel down to ~1e-7 of the tensor's
# largest gradient. They cannot be compared to the reference: they are held to moving at most
# a few lr from it, and every other element to the tolerance.
UNRESOLVED = 1e-5  # |g| < UNRESOLVED * max|g| of the tensor (float32 resolves ~1e-7)


def unresolved_elements(expected: dict, actual: dict) -> dict:
    """tformer name -> bool mask of the elements whose gradient, reference (`expected`) or
    tformer's (`actual`), is below float32's resolution of the tensor (see UNRESOLVED). An
    element that is exactly 0 on both sides (a token or position the batch does not use) is
    resolved: both must step by the weight decay alone there. A cancellation can give an exact
    0 on one side only, hence both sides."""
    out = {}
    for n, g in expected.items():
        threshold = UNRESOLVED * max(float(np.abs(g).max()), 1e-30)
        small = (np.abs(g) < threshold) | (np.abs(actual[n]) < threshold)
        out[n] = small & ~((g == 0.0) & (actual[n] == 0.0))
    return out


def merge_masks(a: dict, b: dict) -> dict:
    return {n: a[n] | b[n] for n in a} if a else dict(b)


def assert_weights_close(model, expected: dict, unresolved: dict, rel, max_drift, what):
    """expected: tformer name -> reference weights. Per tensor max|a-b|/max|b| <= rel over the
    resolved elements; the unresolved ones (a handful per tensor) within max_drift."""
    params = model.parameters()
    actual, expected = {n: params[n].astype(np.float64) for n in expected}, {n: v.copy() for n, v in expected.items()}
    share = sum(int(m.sum()) for m in unresolved.values()) / sum(m.size for m in unresolved.values())
    assert share < 0.01, f"{what}: {share:.1%} of the elements have an unresolved gradient"
    for n, mask in unresolved.items():
        if mask.any():
            drift = float(np.abs(actual[n][mask] - expected[n][mask]).max())
            assert drift <= max_drift, f"{what} {n}: an element with an unresolved gradient moved {drift:.2e}"
            actual[n][mask] = expected[n][mask] = 0.0
    assert_tensors_close(actual, expected, rel, what)


# ---------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------

GRAD_FAMILIES = ["marian", "marian_untied", "bart", "bart_untied", "mbart", "m2m_100"]


@pytest.mark.parametrize("name", GRAD_FAMILIES)
def test_gradients_match_torch(zoo, name, device):
    """One step: loss, gradient of every trained parameter (≤ 1e-4 relative per tensor in
    float32 against float64 autograd) and the global gradient norm."""
    ref, model = pair(zoo, name, device)
    src, tgt = make_batch(name, seed=1)
    inputs, labels = hf_inputs(name, src, tgt)
    loss_ref = hf_loss(ref, inputs, labels)
    loss_ref.backward()
    expected = to_tformer(ref, hf_tensors(ref, "grad"))
    norm_ref = math.sqrt(sum(float((p.grad ** 2).sum()) for p in ref.parameters() if p.grad is not None))

    trainer = trainer_for(model)
    loss = trainer.step(src, tgt)
    assert loss == pytest.approx(float(loss_ref), rel=1e-5)
    grads = trainer.gradients()
    # Exactly the parameters transformers trains: final_logits_bias and sinusoidal tables are
    # not among them; tied embeddings are one entry.
    assert sorted(grads) == sorted(expected)
    assert_tensors_close(grads, expected, 1e-4, f"{name} gradient")
    assert trainer.last_grad_norm == pytest.approx(norm_ref, rel=1e-5)


def test_pad_id_lookups_add_no_gradient(zoo):
    """nn.Embedding(padding_idx=pad): a pad id inside a source sentence (attended to, as its
    mask says), inside a target sentence (a label to predict like any other, then a decoder
    input) and Marian's decoder start token (= pad) add nothing to the pad row. With
    separate vocabularies the source pad row stays exactly 0; the target pad row, tied to the
    output projection, gets only the output projection's gradient."""
    name = "marian_untied"
    pad = lib.MODEL_SPECS[name]["pad"]
    ref, model = pair(zoo, name)
    src, tgt = make_batch(name, seed=2)
    src[0][2] = pad
    src[2][0] = pad
    tgt[1][3] = pad
    inputs, labels = hf_inputs(name, src, tgt)
    hf_loss(ref, inputs, labels).backward()
    expected = to_tformer(ref, hf_tensors(ref, "grad"))
    trainer = trainer_for(model)
    trainer.step(src, tgt)
    grads = trainer.gradients()
    assert np.all(expected["src_embed"][pad] == 0.0)
    assert np.all(grads["src_embed"][pad] == 0.0)
    assert np.any(grads["tgt_embed"][pad] != 0.0)
    assert_tensors_close(grads, expected, 1e-4, f"{name} gradient")


def test_micro_batches_give_the_same_gradients(zoo):
    """micro_batches=3 splits the batch, sums the gradients and normalises by the tokens of
    the whole batch: the same step as one pass."""
    name = "marian"
    ref, model = pair(zoo, name)
    src, tgt = make_batch(name, seed=3)
    inputs, labels = hf_inputs(name, src, tgt)
    loss_ref = hf_loss(ref, inputs, labels)
    loss_ref.backward()
    expected = to_tformer(ref, hf_tensors(ref, "grad"))
    trainer = trainer_for(model)
    loss = trainer.step(src, tgt, micro_batches=3)
    assert loss == pytest.approx(float(loss_ref), rel=1e-5)
    assert_tensors_close(trainer.gradients(), expected, 1e-4, "micro-batch gradient")


# ---------------------------------------------------------------------------------------
# AdamW steps
# ---------------------------------------------------------------------------------------

def _frozen_values(model):
    p = model.parameters()
    names = ["final_logits_bias"] if "final_logits_bias" in p else []
    if model.config.positions != "learned":
        names += ["src_positions", "tgt_positions"]
    return {n: p[n].copy() for n in names}


@pytest.mark.parametrize("name", ["marian", "bart", "mbart"])
@pytest.mark.parametrize("clip_norm", [None, 0.5])
def test_adamw_steps_match_torch(zoo, name, clip_norm, device):
    """Weights after one AdamW step (≤ 1e-5 relative per tensor), then the losses, gradient
    norms (before clipping) and weights of 5 steps on the same batch, against
    torch.optim.AdamW (+ clip_grad_norm_ when clip_norm is set)."""
    ref, model = pair(zoo, name, device)
    src, tgt = make_batch(name, seed=4)
    inputs, labels = hf_inputs(name, src, tgt)
    opt = torch_adamw(ref)
    trainer = trainer_for(model, clip_norm=clip_norm)
    frozen = _frozen_values(model)
    before = to_tformer(ref, hf_tensors(ref, "weight"))

    loss_ref, norm_ref = torch_step(ref, opt, inputs, labels, clip_norm)
    loss = trainer.step(src, tgt)
    unresolved = unresolved_elements(to_tformer(ref, hf_tensors(ref, "grad")), trainer.gradients())
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    assert trainer.last_grad_norm == pytest.approx(norm_ref, rel=1e-5)
    if clip_norm is not None:
        assert norm_ref > 2 * clip_norm, "the batch must be one that clipping changes"
    after_ref = to_tformer(ref, hf_tensors(ref, "weight"))
    moved = max(float(np.abs(after_ref[n] - before[n]).max()) for n in before)
    assert moved > 0.5 * LR, "the update must be visible at the tolerance"
    assert_weights_close(model, after_ref, unresolved, 1e-5, 2 * LR, f"{name} weight after 1 step")

    losses, losses_ref = [loss], [loss_ref]
    for _ in range(4):
        l_ref, n_ref = torch_step(ref, opt, inputs, labels, clip_norm)
        losses_ref.append(l_ref)
        losses.append(trainer.step(src, tgt))
        unresolved = merge_masks(unresolved, unresolved_elements(to_tformer(ref, hf_tensors(ref, "grad")),
                                                                 trainer.gradients()))
        assert trainer.last_grad_norm == pytest.approx(n_ref, rel=1e-4)
    np.testing.assert_allclose(losses, losses_ref, rtol=1e-5)
    assert losses[-1] < losses[0]
    assert trainer.step_count == 5
    after_ref = to_tformer(ref, hf_tensors(ref, "weight"))
    assert_weights_close(model, after_ref, unresolved, 1e-4, 5 * 2 * LR, f"{name} weight after 5 steps")
    params = model.parameters()
    for n, v in frozen.items():  # never trained
        assert np.array_equal(params[n], v), n


def test_evaluate_is_the_loss_without_update(zoo):
    """evaluate(): transformers' loss in eval mode; no weight, step or moment changes."""
    name = "bart"
    ref, model = pair(zoo, name)
    src, tgt = make_batch(name, seed=5)
    inputs, labels = hf_inputs(name, src, tgt)
    trainer = tformer.Trainer(model, dropout=0.3, label_smoothing=SMOOTHING)
    with torch.no_grad():
        expected = float(hf_loss(ref.eval(), inputs, labels))
    before = model.parameters()
    assert trainer.evaluate(src, tgt) == pytest.approx(expected, rel=1e-5)
    assert trainer.evaluate(src, tgt) == trainer.evaluate(src, tgt)  # no dropout
    assert trainer.step_count == 0
    after = model.parameters()
    assert all(np.array_equal(before[n], after[n]) for n in before)


# ---------------------------------------------------------------------------------------
# Learning-rate schedules
# ---------------------------------------------------------------------------------------

def _tiny_model():
    cfg = tformer.TransformerConfig(src_vocab_size=16, tgt_vocab_size=16, d_model=8, encoder_layers=1,
                                    decoder_layers=1, encoder_heads=2, decoder_heads=2, encoder_ffn_dim=16,
                                    decoder_ffn_dim=16, max_positions=16)
    return tformer.Transformer(cfg, seed=0)


def test_schedules():
    model = _tiny_model()
    d, w = model.config.d_model, 10
    paper = tformer.Trainer(model, lr=None, warmup_steps=w, schedule="inverse_sqrt")
    peak = tformer.Trainer(model, lr=5e-4, warmup_steps=w, schedule="inverse_sqrt")
    cosine = tformer.Trainer(model, lr=5e-4, warmup_steps=w, schedule="cosine", total_steps=50)
    constant = tformer.Trainer(model, lr=5e-4, warmup_steps=w, schedule="constant")
    for s in [1, 2, 5, 9, 10, 11, 20, 49, 50, 1000]:
        shape = min(s ** -0.5, s * w ** -1.5)
        assert paper.learning_rate(s) == pytest.approx(d ** -0.5 * shape, rel=1e-12)
        assert peak.learning_rate(s) == pytest.approx(5e-4 * shape / w ** -0.5, rel=1e-12)
        expected_cos = 5e-4 * s / w if s <= w else 5e-4 * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - w) / 40)))
        assert cosine.learning_rate(s) == pytest.approx(expected_cos, rel=1e-12, abs=1e-18)
        assert constant.learning_rate(s) == 5e-4
    assert peak.learning_rate(w) == pytest.approx(5e-4, rel=1e-12)  # the peak is lr, at warmup
    assert max(peak.learning_rate(s) for s in range(1, 100)) == pytest.approx(5e-4, rel=1e-12)
    assert cosine.learning_rate(50) == pytest.approx(0.0, abs=1e-18)


def test_cosine_matches_transformers():
    """The cosine schedule is transformers' get_cosine_schedule_with_warmup: rate(step) =
    lr * lambda(step). (transformers' Trainer applies lambda(k - 1) at its k-th update, so its
    first update has rate 0; tformer's first update has lr / warmup.)"""
    from transformers import get_cosine_schedule_with_warmup

    model = _tiny_model()
    w, total, peak = 7, 60, 3e-3
    trainer = tformer.Trainer(model, lr=peak, warmup_steps=w, schedule="cosine", total_steps=total)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    lam = get_cosine_schedule_with_warmup(opt, w, total).lr_lambdas[0]
    for s in range(1, total + 1):
        assert trainer.learning_rate(s) == pytest.approx(peak * lam(s), rel=1e-12, abs=1e-18), s


def test_lr_and_step_count_follow_the_steps():
    """trainer.lr is the rate of the next step, step_count the steps taken, last_grad_norm the
    norm of the last step's gradients (test_schedule_lr_reaches_the_update checks that the
    step uses that rate)."""
    model = _tiny_model()
    trainer = tformer.Trainer(model, lr=None, warmup_steps=4, dropout=0.0)
    assert trainer.step_count == 0 and trainer.last_grad_norm is None
    assert trainer.lr == trainer.learning_rate(1)
    src, tgt = [[3, 4, 5, 1], [6, 7, 1]], [[8, 9], [10, 11, 12]]
    for k in range(1, 4):
        trainer.step(src, tgt)
        assert trainer.step_count == k
        assert trainer.lr == trainer.learning_rate(k + 1)
        assert trainer.last_grad_norm > 0.0


def test_schedule_lr_reaches_the_update(zoo):
    """A step's AdamW update uses learning_rate(step): an inverse_sqrt trainer (lr=None) and
    torch.optim.AdamW at that rate give the same weights after two steps."""
    name = "marian"
    ref, model = pair(zoo, name)
    src, tgt = make_batch(name, seed=6)
    inputs, labels = hf_inputs(name, src, tgt)
    trainer = tformer.Trainer(model, lr=None, warmup_steps=50, schedule="inverse_sqrt", dropout=0.0, clip_norm=None,
                              label_smoothing=SMOOTHING, **ADAMW)
    opt = torch.optim.AdamW(ref.parameters(), lr=1.0, **ADAMW)
    unresolved = {}
    for step in (1, 2):
        for group in opt.param_groups:
            group["lr"] = trainer.learning_rate(step)
        assert trainer.lr == trainer.learning_rate(step)
        torch_step(ref, opt, inputs, labels)
        trainer.step(src, tgt)
        unresolved = merge_masks(unresolved, unresolved_elements(to_tformer(ref, hf_tensors(ref, "grad")),
                                                                 trainer.gradients()))
    expected = to_tformer(ref, hf_tensors(ref, "weight"))
    rates = trainer.learning_rate(1) + trainer.learning_rate(2)
    assert_weights_close(model, expected, unresolved, 1e-5, 2 * rates, "weight after 2 scheduled steps")

"""Tiny Hugging Face T5 / mT5 reference models for the T5 tests (random weights built
locally from configs, nothing downloaded), their batches and transformers' generate on
them. Nothing here calls tformer.

Shapes are chosen to hit what T5 changes: v1.0 (ReLU FFN, output tied to `shared` with the
d_model**-0.5 factor), v1.1 (gated-GELU, own lm_head, written as hub configs write it:
tie_word_embeddings false), mT5, num_heads * d_kv != d_model, unequal layer counts (fewer
decoder layers: transformers 5's generate sizes its cache by num_layers), and a
small relative_attention_max_distance so that the sequences reach the logarithmic buckets
and the last one."""

import json

import numpy as np
import torch

import tf_testlib as lib

PAD, EOS, START = 0, 1, 0

T5_SPECS = {
    # T5 v1.0 (t5-small's layout): relu, tied output scaled by d_model**-0.5.
    "t5_v10": dict(model_type="t5", config=dict(
        vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=3, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=16, relative_attention_max_distance=20, feed_forward_proj="relu",
        tie_word_embeddings=True)),
    # T5 v1.1 / flan-T5: gated-gelu, own lm_head, 3 heads x 10 = 30 != d_model 24.
    "t5_v11": dict(model_type="t5", config=dict(
        vocab_size=72, d_model=24, d_kv=10, d_ff=40, num_layers=2, num_decoder_layers=2, num_heads=3,
        relative_attention_num_buckets=32, relative_attention_max_distance=24, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False)),
    # mT5: gated-gelu, own lm_head, one decoder layer, 5 heads x 6 = 30 != d_model 20.
    "mt5": dict(model_type="mt5", config=dict(
        vocab_size=80, d_model=20, d_kv=6, d_ff=36, num_layers=2, num_decoder_layers=1, num_heads=5,
        relative_attention_num_buckets=8, relative_attention_max_distance=12, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False)),
}
T5_NAMES = list(T5_SPECS)


def _classes(model_type):
    import transformers as tr
    return {"t5": (tr.T5Config, tr.T5ForConditionalGeneration),
            "mt5": (tr.MT5Config, tr.MT5ForConditionalGeneration)}[model_type]


def build(name, seed=0, **config_changes):
    """The float32 transformers model with every parameter re-drawn (tied matrices once);
    config_changes: other config.json keys (a larger vocab_size, task_specific_params)."""
    spec = T5_SPECS[name]
    config_cls, model_cls = _classes(spec["model_type"])
    torch.manual_seed(seed)
    with lib.quiet():
        model = model_cls(config_cls(**{**spec["config"], **config_changes}, dropout_rate=0.0,
                                     decoder_start_token_id=START, pad_token_id=PAD, eos_token_id=EOS))
    untied = spec["config"]["tie_word_embeddings"] is False
    if untied:  # transformers 5 ties lm_head to shared whatever the config says: untie it
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "layer_norm" in pname:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "relative_attention_bias" in pname:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif pname == "shared.weight":
                p.copy_(torch.randn(p.shape, generator=gen))
            else:  # unscaled attention: keep q.k of order 1
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
    _make_eos_likely_after_some_tokens(model.eval(), name, seed + 2)
    return model


def _make_eos_likely_after_some_tokens(model, name, seed, alpha=6.0, beta=-3.0):
    """Random models never end a hypothesis: the output row of EOS becomes a linear probe
    (as tf_testlib.build_gen_model's) giving EOS a logit alpha higher after a random 20% of
    the tokens than after the others, centred at beta, so hypotheses end at varied lengths."""
    vocab = T5_SPECS[name]["config"]["vocab_size"]
    rng = np.random.default_rng(seed)
    enders = set(int(t) for t in rng.choice(np.arange(2, vocab), size=vocab // 5, replace=False))
    src, tgt = batch(name, [int(n) for n in rng.integers(2, 16, 64)], [int(n) for n in rng.integers(2, 12, 64)],
                     seed=seed)
    captured = {}
    handle = model.lm_head.register_forward_hook(lambda m, inputs, out: captured.update(h=inputs[0].detach()))
    hf_logits(model, src, tgt)
    handle.remove()
    tgt_ids, tgt_mask = lib.pad_batch(tgt, PAD)
    real = torch.from_numpy(tgt_mask).bool()
    h, last = captured["h"][real].double(), torch.from_numpy(tgt_ids)[real]
    after = torch.tensor([int(t) in enders for t in last])
    diff = h[after].mean(0) - h[~after].mean(0)
    mid = 0.5 * (h[after].mean(0) + h[~after].mean(0))
    w = alpha * diff / (diff @ diff)
    w = w + (beta - float(w @ mid)) * mid / (mid @ mid)
    with torch.no_grad():
        model.lm_head.weight[EOS] = w.to(model.lm_head.weight.dtype)


def save(model, name, directory):
    """save_pretrained, with a v1.1-style config.json as the hub has them (tie_word_embeddings
    false, no scale_decoder_outputs) for the untied specs."""
    with lib.quiet():
        model.save_pretrained(str(directory))
    if T5_SPECS[name]["config"]["tie_word_embeddings"] is False:
        path = directory / "config.json"
        cfg = json.loads(path.read_text())
        cfg.pop("scale_decoder_outputs", None)
        cfg["tie_word_embeddings"] = False
        path.write_text(json.dumps(cfg, indent=2))
    return directory


def reference(name, directory):
    """The directory read back by transformers, float64, eager attention."""
    _, model_cls = _classes(T5_SPECS[name]["model_type"])
    with lib.quiet():
        model = model_cls.from_pretrained(str(directory), attn_implementation="eager")
    return model.double().eval()


def batch(name, src_lens, tgt_lens, seed=0):
    """Sources end with EOS, targets start with the decoder start token (pad)."""
    vocab = T5_SPECS[name]["config"]["vocab_size"]
    rng = np.random.default_rng(seed)
    src = [[int(t) for t in rng.integers(2, vocab, n - 1)] + [EOS] for n in src_lens]
    tgt = [[START] + [int(t) for t in rng.integers(2, vocab, n - 1)] for n in tgt_lens]
    return src, tgt


def hf_logits(ref, src, tgt):
    src_ids, src_mask = lib.pad_batch(src, PAD)
    tgt_ids, tgt_mask = lib.pad_batch(tgt, PAD)
    with torch.no_grad():
        out = ref(input_ids=torch.from_numpy(src_ids), attention_mask=torch.from_numpy(src_mask),
                  decoder_input_ids=torch.from_numpy(tgt_ids), decoder_attention_mask=torch.from_numpy(tgt_mask))
    return out.logits.numpy()


def hf_encoder_output(ref, src):
    src_ids, src_mask = lib.pad_batch(src, PAD)
    with torch.no_grad():
        out = ref.get_encoder()(input_ids=torch.from_numpy(src_ids), attention_mask=torch.from_numpy(src_mask))
    return out.last_hidden_state.numpy()


def hf_generate(ref, src, **options):
    """transformers generate (greedy / beam) on the right-padded batch, in tformer's
    convention: ([source][hypothesis] tokens, [source][hypothesis] sequences_scores or None)."""
    kwargs = lib.hf_options(options)
    n_ret = kwargs.get("num_return_sequences", 1)
    ids, mask = lib.pad_batch(src, PAD)
    with torch.no_grad(), lib.quiet():
        out = ref.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                           output_scores=True, return_dict_in_generate=True, **kwargs)
    rows = out.sequences.tolist()
    tokens, scores = [], []
    for b in range(len(src)):
        tokens.append([lib.strip_hf_sequence(rows[b * n_ret + h], START, EOS, kwargs["max_new_tokens"])[0]
                       for h in range(n_ret)])
        if kwargs["num_beams"] > 1:
            scores.append([float(out.sequences_scores[b * n_ret + h]) for h in range(n_ret)])
    return tokens, scores


def uniform01(seed, source, step, k=0):
    """tformer's sampling draw (cpp/include/tformer/random.h, rng::uniform01), in Python."""
    mask = (1 << 64) - 1

    def splitmix64(x):
        x = (x + 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    h = splitmix64(splitmix64(splitmix64(seed ^ 0x5DEECE66D) ^ source) ^ ((step * 0x100000001B3 + k) & mask))
    return (h >> 11) * (1.0 / 9007199254740992.0)


def sample_reference(ref, src, seed, max_length):
    """Sampling replayed on transformers' float64 logits with tformer's draws: at each step
    the inverse CDF of softmax(logits) at uniform01(seed, source, step); stops at EOS."""
    out = []
    for b, s in enumerate(src):
        tokens = []
        for step in range(max_length):
            logits = hf_logits(ref, [s], [[START] + tokens])[0, -1].astype(np.float64)
            p = np.exp(logits - logits.max())
            cdf = np.cumsum(p)
            token = int(np.searchsorted(cdf, uniform01(seed, b, step) * cdf[-1], side="right"))
            token = min(token, len(p) - 1)
            if token == EOS:
                break
            tokens.append(token)
        out.append(tokens)
    return out

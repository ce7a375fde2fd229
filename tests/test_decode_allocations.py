"""The decode loop allocates no tensor memory: every buffer of a step (KV caches,
workspaces, logits) is made before the first step. Generating 4 or 24 tokens must
therefore cost the same number of tensor allocations."""
import pytest

import tformer
from tformer import _core


def _allocations(model, src, **options):
    model.generate(src, **options)  # warm: thread-local scratch, caches
    before = _core.tensor_allocations()
    model.generate(src, **options)
    return _core.tensor_allocations() - before


@pytest.mark.parametrize("beam_size", [1, 4])
def test_decode_steps_allocate_nothing(beam_size, device):
    cfg = tformer.TransformerConfig(src_vocab_size=60, tgt_vocab_size=60, d_model=32, encoder_layers=2,
                                    decoder_layers=2, encoder_heads=4, decoder_heads=4, encoder_ffn_dim=48,
                                    decoder_ffn_dim=48, max_positions=64, pad_id=0, eos_id=1, bos_id=2)
    src = [[5, 6, 7, 1], [8, 9, 1]]
    # Half-precision models (CUDA only) widen their logits on the device every step.
    for dtype in ["float32"] if device == "cpu" else ["float32", "float16", "bfloat16"]:
        model = tformer.Transformer(cfg, seed=0).to(device, dtype)
        short = _allocations(model, src, beam_size=beam_size, max_length=4, min_length=4)
        long = _allocations(model, src, beam_size=beam_size, max_length=24, min_length=24)
        assert short > 0  # the setup before the loop does allocate
        assert long == short, f"{dtype}: {long - short} extra tensor allocations for 20 more decode steps"


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("beam_size", [1, 4])
def test_t5_decode_steps_allocate_nothing(beam_size, gated, device):
    """T5's relative position bias is computed once per session, not per step."""
    cfg = tformer.TransformerConfig(src_vocab_size=60, tgt_vocab_size=60, d_model=24, encoder_layers=2,
                                    decoder_layers=2, encoder_heads=3, decoder_heads=3, encoder_ffn_dim=40,
                                    decoder_ffn_dim=40, head_dim=10, rms_norm=True, linear_bias=False,
                                    attention_scale=1.0, gated_ffn=gated, activation="gelu_tanh" if gated else "relu",
                                    positions="none", relative_attention_buckets=16,
                                    relative_attention_max_distance=20, pre_norm=True, encoder_final_norm=True,
                                    decoder_final_norm=True, embed_scale=1.0, logits_scale=24 ** -0.5,
                                    pad_id=0, eos_id=1, decoder_start_id=0)
    src = [[5, 6, 7, 1], [8, 9, 1]]
    model = tformer.Transformer(cfg, seed=0).to(device)
    short = _allocations(model, src, beam_size=beam_size, max_length=4, min_length=4)
    long = _allocations(model, src, beam_size=beam_size, max_length=24, min_length=24)
    assert short > 0
    assert long == short, f"{long - short} extra tensor allocations for 20 more decode steps"


@pytest.mark.parametrize("beam_size", [1, 4])
def test_int8_decode_steps_allocate_nothing(beam_size):
    """int8 models (CPU only): the int8 GEMMs' activation scratch only grows, the logits with
    their fused output bias are made before the loop."""
    cfg = tformer.TransformerConfig(src_vocab_size=60, tgt_vocab_size=60, d_model=32, encoder_layers=2,
                                    decoder_layers=2, encoder_heads=4, decoder_heads=4, encoder_ffn_dim=48,
                                    decoder_ffn_dim=48, max_positions=64, pad_id=0, eos_id=1, bos_id=2,
                                    final_logits_bias=True)
    src = [[5, 6, 7, 1], [8, 9, 1]]
    model = tformer.Transformer(cfg, seed=0, dtype="int8")
    short = _allocations(model, src, beam_size=beam_size, max_length=4, min_length=4)
    long = _allocations(model, src, beam_size=beam_size, max_length=24, min_length=24)
    assert short > 0
    assert long == short, f"{long - short} extra tensor allocations for 20 more decode steps"

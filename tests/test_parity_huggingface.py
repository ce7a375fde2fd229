"""Whole-model parity with Hugging Face transformers (DESIGN.md, testing strategy 2).

Each tiny checkpoint has random weights, every parameter re-initialised so that a tensor
dropped, transposed or swapped by the loader changes the logits. The reference is the
same checkpoint read back by transformers, run in float64 with eager attention, right
padding and attention masks built from the lengths. tformer runs in float32; we compare
real positions only (logits at padded positions are unspecified).

Tolerance: max|a - b| / max|b| <= 1e-4 (DESIGN.md). transformers itself in float32 is
within ~1e-6 of its float64 run on these models, so the bound has a 100x margin.
"""

import numpy as np
import pytest
import tformer

import tf_testlib as lib

REL = 1e-4
ALL = lib.FAMILY_NAMES

# Four sentences of different lengths, including a length-1 source (just EOS) and a
# length-1 target (just the decoder start token); the longest row differs between
# source and target so that each side is padded somewhere.
SRC_LENS = [7, 1, 12, 4]
TGT_LENS = [5, 9, 1, 3]


def _check_logits(logits, ref_logits, tgt, vocab, what):
    assert isinstance(logits, np.ndarray), f"{what}: forward returned {type(logits)}"
    assert logits.dtype == np.float32, f"{what}: dtype {logits.dtype}"
    assert logits.shape == (len(tgt), max(map(len, tgt)), vocab), f"{what}: shape {logits.shape}"
    lib.assert_rows_close(logits, ref_logits, [len(t) for t in tgt], rel=REL, what=what)


@pytest.mark.parametrize("name", ALL)
def test_logits_match_hf(zoo, loaded, device, name):
    ckpt = zoo.get(name)
    src, tgt = ckpt.batch(SRC_LENS, TGT_LENS, seed=11)
    logits = loaded(name, device).forward(src, tgt)
    _check_logits(logits, ckpt.hf_logits(src, tgt), tgt, lib.vocab_sizes(name)[1],
                  f"{name}/{device} logits")


@pytest.mark.parametrize("name", ALL)
def test_encoder_output_matches_hf(zoo, loaded, device, name):
    ckpt = zoo.get(name)
    src, _ = ckpt.batch(SRC_LENS, TGT_LENS, seed=12)
    out = loaded(name, device).encode(src)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (len(src), max(SRC_LENS), ckpt.hf_config.d_model)
    lib.assert_rows_close(out, ckpt.hf_encoder_output(src), SRC_LENS, rel=REL,
                          what=f"{name}/{device} encoder output")


@pytest.mark.parametrize("name", ALL)
def test_single_token_batch_of_one(zoo, loaded, device, name):
    """Smallest possible input: one sentence, source = [EOS], target = [start]."""
    ckpt = zoo.get(name)
    src, tgt = ckpt.batch([1], [1], seed=13)
    logits = loaded(name, device).forward(src, tgt)
    _check_logits(logits, ckpt.hf_logits(src, tgt), tgt, lib.vocab_sizes(name)[1],
                  f"{name}/{device} 1x1")


@pytest.mark.parametrize("name", ["marian", "bart", "mbart", "m2m_100"])
def test_sequences_at_max_positions(zoo, loaded, device, name):
    """Rows exactly as long as the position table (the last valid position) next to a
    short row."""
    ckpt = zoo.get(name)
    n = ckpt.hf_config.max_position_embeddings
    src, tgt = ckpt.batch([n, 2], [3, n], seed=14)
    logits = loaded(name, device).forward(src, tgt)
    _check_logits(logits, ckpt.hf_logits(src, tgt), tgt, lib.vocab_sizes(name)[1],
                  f"{name}/{device} max length")


@pytest.mark.parametrize("name", ["marian", "m2m_100_wide", "bart_untied"])
def test_many_lengths(zoo, loaded, device, name):
    """Nine rows with every length from 1 up: catches masks that leak across rows."""
    ckpt = zoo.get(name)
    src_lens = [1, 3, 17, 2, 9, 5, 16, 4, 8]
    tgt_lens = [13, 1, 2, 11, 6, 17, 3, 7, 1]
    src, tgt = ckpt.batch(src_lens, tgt_lens, seed=15)
    logits = loaded(name, device).forward(src, tgt)
    _check_logits(logits, ckpt.hf_logits(src, tgt), tgt, lib.vocab_sizes(name)[1],
                  f"{name}/{device} many lengths")


def test_marian_separate_vocabularies(zoo, loaded, device):
    """Target ids >= the source vocabulary size are valid when the decoder vocabulary is
    larger (decoder_vocab_size); logits span the target vocabulary."""
    ckpt = zoo.get("marian_untied")
    src_v, tgt_v = lib.vocab_sizes("marian_untied")
    assert tgt_v > src_v
    start, eos = ckpt.spec["start"], ckpt.spec["eos"]
    src = [[src_v - 2, 5, 40, eos], [3, eos]]
    tgt = [[start, tgt_v - 1, src_v, 100, src_v - 2], [start, 7]]
    logits = loaded("marian_untied", device).forward(src, tgt)
    _check_logits(logits, ckpt.hf_logits(src, tgt), tgt, tgt_v, f"marian_untied/{device}")


@pytest.mark.parametrize("int_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("name", ["bart", "m2m_100"])
def test_numpy_2d_input_equals_list_input(zoo, loaded, device, name, int_dtype):
    ckpt = zoo.get(name)
    src, tgt = ckpt.batch([6, 6, 6], [4, 4, 4], seed=16)
    model = loaded(name, device)
    from_lists = model.forward(src, tgt)
    from_arrays = model.forward(np.array(src, dtype=int_dtype), np.array(tgt, dtype=int_dtype))
    np.testing.assert_array_equal(from_arrays, from_lists)
    lib.assert_rows_close(from_arrays, ckpt.hf_logits(src, tgt), [4, 4, 4], rel=REL,
                          what=f"{name}/{device} numpy input")
    enc_lists = model.encode(src)
    enc_arrays = model.encode(np.array(src, dtype=int_dtype))
    np.testing.assert_array_equal(enc_arrays, enc_lists)


@pytest.mark.parametrize("name", ["marian", "bart"])
def test_pytorch_model_bin_checkpoint(zoo, device, name):
    """A directory with config.json + pytorch_model.bin (the full state_dict saved with
    torch.save, tied and sinusoidal tensors included) and no model.safetensors."""
    ckpt = zoo.get(name, weights="bin")
    assert not (ckpt.dir / "model.safetensors").exists()
    assert (ckpt.dir / "pytorch_model.bin").exists()
    model = tformer.from_huggingface(str(ckpt.dir), device=device, dtype="float32")
    src, tgt = ckpt.batch(SRC_LENS, TGT_LENS, seed=17)
    _check_logits(model.forward(src, tgt), ckpt.hf_logits(src, tgt), tgt,
                  lib.vocab_sizes(name)[1], f"{name}/{device} pytorch_model.bin")


def test_bin_and_safetensors_checkpoints_agree(zoo):
    """The same weights through both file formats give the same model."""
    st = tformer.from_huggingface(str(zoo.get("marian").dir))
    pt = tformer.from_huggingface(str(zoo.get("marian", weights="bin").dir))
    src, tgt = zoo.get("marian").batch(SRC_LENS, TGT_LENS, seed=18)
    a, b = pt.forward(src, tgt), st.forward(src, tgt)
    for row, t in enumerate(tgt):  # real positions only
        np.testing.assert_array_equal(a[row, :len(t)], b[row, :len(t)])


def test_strided_numpy_ids(zoo, loaded):
    """Non-contiguous id arrays (a column slice, a transpose) are read by their strides."""
    ckpt = zoo.get("m2m_100")
    src, tgt = ckpt.batch([5, 5], [3, 3], seed=19)
    src_wide = np.repeat(np.array(src, dtype=np.int64), 2, axis=1)  # each id twice
    tgt_fortran = np.asfortranarray(np.array(tgt, dtype=np.int32))
    src_strided = src_wide[:, ::2]
    assert not src_strided.flags.c_contiguous and not tgt_fortran.flags.c_contiguous
    np.testing.assert_array_equal(src_strided, np.array(src))
    logits = loaded("m2m_100").forward(src_strided, tgt_fortran)
    lib.assert_rows_close(logits, ckpt.hf_logits(src, tgt), [3, 3], rel=REL,
                          what="strided ids")

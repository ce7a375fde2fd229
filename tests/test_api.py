"""The Python surface: config, device/dtype strings, to(), threads, build info."""

import dataclasses
import os
import subprocess
import sys
import pathlib
import threading

import numpy as np
import pytest
import tformer

import tf_testlib as lib
from tf_testlib import EXPECTED_DEVICE_STRING

REL = 1e-4


@pytest.mark.parametrize("name", lib.FAMILY_NAMES)
def test_config_fields_match_hf_config(zoo, loaded, name):
    hf = zoo.get(name).hf_config
    cfg = loaded(name).config
    assert isinstance(cfg, tformer.TransformerConfig)
    assert dataclasses.is_dataclass(cfg)
    src_v, tgt_v = lib.vocab_sizes(name)
    expected = dict(d_model=hf.d_model, encoder_layers=hf.encoder_layers,
                    decoder_layers=hf.decoder_layers,
                    encoder_heads=hf.encoder_attention_heads,
                    decoder_heads=hf.decoder_attention_heads,
                    src_vocab_size=src_v, tgt_vocab_size=tgt_v)
    actual = {k: getattr(cfg, k) for k in expected}
    assert actual == expected
    # max_positions is documented as the rows of the positions table: BART/mBART's
    # learned tables and fairseq's sinusoidal one hold max_position_embeddings + 2 rows
    # (offset 2). The enforced length limit is tested in test_errors.py.
    n = hf.max_position_embeddings
    assert n <= cfg.max_positions <= n + 2, (cfg.max_positions, n)


def test_model_device_and_dtype_strings(zoo, device):
    model = tformer.from_huggingface(str(zoo.get("bart").dir), device=device, dtype="float32")
    assert isinstance(model, tformer.Transformer)
    assert model.device == EXPECTED_DEVICE_STRING[device]
    assert model.dtype == "float32"


def test_default_device_and_dtype_are_cpu_float32(zoo):
    model = tformer.from_huggingface(str(zoo.get("marian").dir))
    assert model.device == "cpu"
    assert model.dtype == "float32"


def test_from_huggingface_accepts_pathlib_path(zoo):
    ckpt = zoo.get("m2m_100")
    assert isinstance(ckpt.dir, pathlib.Path)
    model = tformer.from_huggingface(ckpt.dir)
    src, tgt = ckpt.batch([3, 5], [4, 2], seed=21)
    lib.assert_rows_close(model.forward(src, tgt), ckpt.hf_logits(src, tgt), [4, 2],
                          rel=REL, what="pathlib.Path checkpoint")


def test_to_moves_model_and_keeps_results(zoo, device):
    ckpt = zoo.get("mbart")
    src, tgt = ckpt.batch([5, 2, 8], [3, 6, 1], seed=22)
    expected = ckpt.hf_logits(src, tgt)
    lens = [len(t) for t in tgt]
    model = tformer.from_huggingface(str(ckpt.dir))
    moved = model.to(device)
    assert isinstance(moved, tformer.Transformer)
    assert moved.device == EXPECTED_DEVICE_STRING[device]
    lib.assert_rows_close(moved.forward(src, tgt), expected, lens, rel=REL, what=f"to({device})")
    back = moved.to("cpu")
    assert back.device == "cpu"
    lib.assert_rows_close(back.forward(src, tgt), expected, lens, rel=REL, what="to(cpu)")


def test_to_cpu_on_cpu_model(zoo):
    ckpt = zoo.get("marian")
    model = tformer.from_huggingface(str(ckpt.dir))
    same = model.to("cpu")
    assert same.device == "cpu"
    src, tgt = ckpt.batch([4], [3], seed=23)
    lib.assert_rows_close(same.forward(src, tgt), ckpt.hf_logits(src, tgt), [3], rel=REL,
                          what="to(cpu)")


def test_set_num_threads_changes_get_num_threads(zoo, loaded):
    original = tformer.get_num_threads()
    assert isinstance(original, int) and original >= 1
    ckpt = zoo.get("bart")
    src, tgt = ckpt.batch([9, 3], [7, 2], seed=24)
    expected = ckpt.hf_logits(src, tgt)
    try:
        for n in (1, 2, 3):
            tformer.set_num_threads(n)
            assert tformer.get_num_threads() == n
            # Results must not depend on the thread count.
            lib.assert_rows_close(loaded("bart").forward(src, tgt), expected, [7, 2],
                                  rel=REL, what=f"{n} threads")
    finally:
        tformer.set_num_threads(original)
    assert tformer.get_num_threads() == original


def test_build_info():
    info = tformer.build_info()
    assert isinstance(info, dict)
    assert {"version", "cuda", "blas"} <= set(info)
    assert isinstance(info["version"], str) and info["version"]
    assert isinstance(info["cuda"], bool)
    assert info["blas"]
    assert info["int8_kernel"] == tformer.ops.cpu_int8_kernel()
    assert info["int8_kernel"] in ("avx512_vnni", "avx_vnni", "avx2", "base")
    if tformer.cuda_available():
        # The packaged library, or the one TFORMER_CUDA_LIBRARY names (which a build without CUDA may load).
        assert info["cuda"] is True or info["cuda_library"] == os.environ.get("TFORMER_CUDA_LIBRARY"), \
            "cuda_available() but build_info says no CUDA backend"


def test_build_info_names_the_capped_int8_kernel():
    """TFORMER_CPU_ISA=base caps the int8 kernel at the portable one; a forced kernel that
    does not exist is reported, not raised, by build_info."""
    code = "import tformer; print(tformer.build_info()['int8_kernel'])"
    env = dict(os.environ, TFORMER_CPU_ISA="base")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "base"
    env = dict(os.environ, TFORMER_INT8_KERNEL="avx9000")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("unavailable:") and "avx512_vnni" in out.stdout


def test_cuda_available_is_bool():
    assert isinstance(tformer.cuda_available(), bool)
    if not tformer.build_info()["cuda"] and not os.environ.get("TFORMER_CUDA_LIBRARY"):
        assert tformer.cuda_available() is False


def test_forward_from_several_threads(zoo, loaded):
    """DESIGN.md: a model object is safe to use from several threads at once."""
    ckpt = zoo.get("m2m_100")
    model = loaded("m2m_100")
    batches = [ckpt.batch([3 + i, 1 + 2 * i], [2 + i, 5], seed=30 + i) for i in range(4)]
    expected = [ckpt.hf_logits(s, t) for s, t in batches]
    results = [[None] * 5 for _ in batches]
    errors = []

    def work(i):
        try:
            for rep in range(5):
                results[i][rep] = model.forward(*batches[i])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, (src, tgt) in enumerate(batches):
        for rep in range(5):
            lib.assert_rows_close(results[i][rep], expected[i], [len(t) for t in tgt],
                                  rel=REL, what=f"thread {i} call {rep}")

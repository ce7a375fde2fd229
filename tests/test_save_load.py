"""model.save(dir) / tformer.Transformer.load(dir): the round trip keeps the model."""

import json

import numpy as np
import pytest
import safetensors.numpy
import tformer

import tf_testlib as lib
from tf_testlib import EXPECTED_DEVICE_STRING

REL = 1e-4
SRC_LENS = [6, 1, 9]
TGT_LENS = [4, 7, 1]


def _real_rows_equal(a, b, lens, what):
    assert a.shape == b.shape, f"{what}: {a.shape} != {b.shape}"
    for row, n in enumerate(lens):
        np.testing.assert_array_equal(a[row, :n], b[row, :n], err_msg=f"{what} row {row}")


@pytest.mark.parametrize("name", lib.FAMILY_NAMES)
def test_round_trip_gives_identical_logits(zoo, tmp_path, name):
    ckpt = zoo.get(name)
    original = tformer.from_huggingface(str(ckpt.dir))
    out_dir = tmp_path / "saved"
    original.save(str(out_dir))
    assert (out_dir / "config.json").is_file()
    assert (out_dir / "model.safetensors").is_file()

    reloaded = tformer.Transformer.load(str(out_dir), device="cpu", dtype="float32")
    assert isinstance(reloaded, tformer.Transformer)
    assert reloaded.config == original.config
    assert reloaded.device == "cpu" and reloaded.dtype == "float32"

    src, tgt = ckpt.batch(SRC_LENS, TGT_LENS, seed=41)
    before, after = original.forward(src, tgt), reloaded.forward(src, tgt)
    _real_rows_equal(after, before, TGT_LENS, f"{name} logits after round trip")
    lib.assert_rows_close(after, ckpt.hf_logits(src, tgt), TGT_LENS, rel=REL,
                          what=f"{name} reloaded vs HF")
    _real_rows_equal(reloaded.encode(src), original.encode(src), SRC_LENS,
                     f"{name} encoder output after round trip")


def test_saved_files_are_valid(zoo, tmp_path):
    ckpt = zoo.get("marian_untied")
    model = tformer.from_huggingface(str(ckpt.dir))
    model.save(str(tmp_path))
    json.loads((tmp_path / "config.json").read_text())  # valid JSON
    tensors = safetensors.numpy.load_file(str(tmp_path / "model.safetensors"))
    assert tensors, "model.safetensors holds no tensors"
    for key, value in tensors.items():
        assert value.dtype == np.float32, f"{key}: {value.dtype}"
        assert np.all(np.isfinite(value)), f"{key}: non-finite values"
    # Checkpoints are written to a temporary file and renamed (DESIGN.md): nothing
    # half-written is left beside them.
    leftovers = [p.name for p in tmp_path.iterdir() if "tmp" in p.name.lower()
                 or p.name.endswith((".part", ".partial"))]
    assert not leftovers, leftovers


def test_save_overwrites_existing_checkpoint(zoo, tmp_path):
    first = tformer.from_huggingface(str(zoo.get("bart").dir))
    second = tformer.from_huggingface(str(zoo.get("mbart").dir))
    first.save(str(tmp_path))
    second.save(str(tmp_path))
    reloaded = tformer.Transformer.load(str(tmp_path))
    assert reloaded.config == second.config
    ckpt = zoo.get("mbart")
    src, tgt = ckpt.batch([4, 2], [3, 5], seed=42)
    lib.assert_rows_close(reloaded.forward(src, tgt), ckpt.hf_logits(src, tgt), [3, 5],
                          rel=REL, what="overwritten checkpoint")


def test_load_onto_device(zoo, tmp_path, device):
    ckpt = zoo.get("m2m_100")
    tformer.from_huggingface(str(ckpt.dir)).save(str(tmp_path))
    model = tformer.Transformer.load(str(tmp_path), device=device, dtype="float32")
    assert model.device == EXPECTED_DEVICE_STRING[device]
    src, tgt = ckpt.batch(SRC_LENS, TGT_LENS, seed=43)
    lib.assert_rows_close(model.forward(src, tgt), ckpt.hf_logits(src, tgt), TGT_LENS,
                          rel=REL, what=f"load on {device}")


def test_save_from_device_model(zoo, tmp_path, device):
    ckpt = zoo.get("marian")
    model = tformer.from_huggingface(str(ckpt.dir), device=device)
    model.save(str(tmp_path))
    reloaded = tformer.Transformer.load(str(tmp_path))
    src, tgt = ckpt.batch(SRC_LENS, TGT_LENS, seed=44)
    lib.assert_rows_close(reloaded.forward(src, tgt), ckpt.hf_logits(src, tgt), TGT_LENS,
                          rel=REL, what=f"saved from {device}")


def test_io_is_a_format_module():
    """tformer.io reads and writes the file format only: model.py uses it, it never imports
    model.py (no circle, not even a lazy import inside a function)."""
    import ast

    import tformer.io

    with open(tformer.io.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
            imported.update(f"{'.' * node.level}{node.module or ''}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert not {name for name in imported if name.endswith("model") or ".model." in name}, imported

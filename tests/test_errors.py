"""Bad input raises a Python exception of the documented type whose message names the
problem (DESIGN.md, "Errors and limits"). Types are checked strictly; wording loosely."""

import json
import re
import shutil

import numpy as np
import pytest
import safetensors.numpy
import tformer

import tf_testlib as lib

NAME = "bart"  # vocab 150, d_model 40, 5 heads, max_position_embeddings 48


@pytest.fixture(scope="module")
def model(loaded):
    return loaded(NAME)


@pytest.fixture(scope="module")
def good(zoo):
    return zoo.get(NAME).batch([4, 2], [3, 1], seed=51)


def _copy_checkpoint(zoo, name, dst):
    shutil.copytree(zoo.get(name).dir, dst)
    return dst


# ---- token ids ---------------------------------------------------------------------

@pytest.mark.parametrize("side", ["src", "tgt"])
def test_float_ids_list(model, good, side):
    src, tgt = good
    bad = [[float(t) + 0.5 for t in row] for row in (src if side == "src" else tgt)]
    args = (bad, tgt) if side == "src" else (src, bad)
    with pytest.raises((TypeError, ValueError), match=r"(?i)int|float|dtype"):
        model.forward(*args)


@pytest.mark.parametrize("side", ["src", "tgt"])
def test_float_ids_array(model, good, side):
    src = np.array([good[0][0]], dtype=np.int64)
    tgt = np.array([good[1][0]], dtype=np.int64)
    if side == "src":
        src = src.astype(np.float32)
    else:
        tgt = tgt.astype(np.float64)
    with pytest.raises((TypeError, ValueError), match=r"(?i)int|float|dtype"):
        model.forward(src, tgt)


def test_float_ids_encode(model):
    with pytest.raises((TypeError, ValueError), match=r"(?i)int|float|dtype"):
        model.encode(np.ones((2, 3), dtype=np.float32))


@pytest.mark.parametrize("side", ["src", "tgt"])
def test_3d_ids_array(model, side):
    three_d = np.full((2, 3, 2), 5, dtype=np.int32)
    two_d = np.full((2, 3), 5, dtype=np.int32)
    args = (three_d, two_d) if side == "src" else (two_d, three_d)
    with pytest.raises((TypeError, ValueError), match=r"(?i)dim|2-?d|shape|rank|nested"):
        model.forward(*args)


def test_batch_sizes_differ(model, good):
    src, tgt = good
    with pytest.raises(ValueError, match=r"(?i)batch"):
        model.forward(src, tgt[:1])
    with pytest.raises(ValueError, match=r"(?i)batch"):
        model.forward(np.array([[5, 6, 2]] * 3), np.array([[2, 7]] * 2))


def _assert_names_id_and_vocab(excinfo, bad_id, vocab):
    msg = str(excinfo.value)
    assert str(bad_id) in msg, f"message does not name the id {bad_id}: {msg!r}"
    assert str(vocab) in msg, f"message does not name the vocabulary size {vocab}: {msg!r}"


@pytest.mark.parametrize("bad_id", [-3, 150, 1000])
def test_source_id_out_of_vocab(model, good, bad_id):
    src, tgt = good
    src = [list(src[0]), list(src[1])]
    src[1][0] = bad_id
    with pytest.raises(ValueError) as excinfo:
        model.forward(src, tgt)
    _assert_names_id_and_vocab(excinfo, bad_id, 150)
    with pytest.raises(ValueError) as excinfo:
        model.encode(src)
    _assert_names_id_and_vocab(excinfo, bad_id, 150)


@pytest.mark.parametrize("bad_id", [-1, 150])
def test_target_id_out_of_vocab(model, good, bad_id):
    src, tgt = good
    tgt = [list(tgt[0]), list(tgt[1])]
    tgt[0][2] = bad_id
    with pytest.raises(ValueError) as excinfo:
        model.forward(src, tgt)
    _assert_names_id_and_vocab(excinfo, bad_id, 150)


def test_out_of_vocab_in_numpy_array(model):
    with pytest.raises(ValueError) as excinfo:
        model.forward(np.array([[5, 151, 2]], dtype=np.int32), np.array([[2, 7]], dtype=np.int32))
    _assert_names_id_and_vocab(excinfo, 151, 150)


def test_separate_vocabularies_are_checked_separately(loaded):
    """marian_untied: source vocab 80, target vocab 120. 100 is a valid target id and an
    invalid source id."""
    model = loaded("marian_untied")
    with pytest.raises(ValueError) as excinfo:
        model.forward([[100, 0]], [[79, 5]])
    _assert_names_id_and_vocab(excinfo, 100, 80)
    with pytest.raises(ValueError) as excinfo:
        model.forward([[5, 0]], [[79, 120]])
    _assert_names_id_and_vocab(excinfo, 120, 120)
    logits = model.forward([[5, 0]], [[79, 100]])  # valid: no exception
    assert logits.shape == (1, 2, 120)


# ---- lengths -----------------------------------------------------------------------

@pytest.mark.parametrize("side", ["src", "tgt"])
@pytest.mark.parametrize("name", ["bart", "marian"])
def test_sequence_longer_than_positions(zoo, loaded, name, side):
    ckpt = zoo.get(name)
    n = ckpt.hf_config.max_position_embeddings
    long_src, long_tgt = ckpt.batch([n + 1, 3], [n + 1, 2], seed=52)
    src, tgt = ckpt.batch([3, 3], [2, 2], seed=53)
    args = (long_src, tgt) if side == "src" else (src, long_tgt)
    with pytest.raises(ValueError, match=r"(?i)position|length|long") as excinfo:
        loaded(name).forward(*args)
    assert str(n) in str(excinfo.value), f"message does not name the limit {n}"


def test_empty_batch(model):
    with pytest.raises(ValueError, match=r"(?i)empty|batch"):
        model.forward([], [])
    with pytest.raises(ValueError, match=r"(?i)empty|batch"):
        model.encode([])
    with pytest.raises(ValueError, match=r"(?i)empty|batch"):
        model.forward(np.zeros((0, 3), dtype=np.int32), np.zeros((0, 2), dtype=np.int32))


@pytest.mark.parametrize("side", ["src", "tgt"])
def test_empty_sentence(model, good, side):
    src, tgt = good
    if side == "src":
        src = [src[0], []]
    else:
        tgt = [[], tgt[1]]
    with pytest.raises(ValueError, match=r"(?i)empty|length|zero"):
        model.forward(src, tgt)


def test_zero_length_array(model):
    with pytest.raises(ValueError, match=r"(?i)empty|length|zero"):
        model.forward(np.zeros((2, 0), dtype=np.int32), np.full((2, 1), 2, dtype=np.int32))


# ---- files -------------------------------------------------------------------------

def test_missing_directory(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match=re.escape("no_such_model")):
        tformer.from_huggingface(str(missing))
    with pytest.raises(FileNotFoundError, match=re.escape("no_such_model")):
        tformer.Transformer.load(str(missing))


def test_missing_weight_file(zoo, tmp_path):
    directory = _copy_checkpoint(zoo, NAME, tmp_path / "ckpt")
    (directory / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?i)safetensors|pytorch_model|weight"):
        tformer.from_huggingface(str(directory))


def test_missing_config(zoo, tmp_path):
    directory = _copy_checkpoint(zoo, NAME, tmp_path / "ckpt")
    (directory / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config"):
        tformer.from_huggingface(str(directory))


def test_load_without_weights(zoo, tmp_path):
    tformer.from_huggingface(str(zoo.get(NAME).dir)).save(str(tmp_path))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?i)safetensors|weight"):
        tformer.Transformer.load(str(tmp_path))


@pytest.mark.parametrize("keep_fraction", [0.5, 0.999, 0.0005])
def test_truncated_safetensors(zoo, tmp_path, keep_fraction):
    """Cut inside the data, one byte short, and inside the JSON header."""
    directory = _copy_checkpoint(zoo, NAME, tmp_path / "ckpt")
    path = directory / "model.safetensors"
    data = path.read_bytes()
    keep = max(1, min(len(data) - 1, int(len(data) * keep_fraction)))
    path.write_bytes(data[:keep])
    with pytest.raises((ValueError, RuntimeError),
                       match=r"(?i)safetensors|truncat|header|incomplete|corrupt|size|invalid|bytes"):
        tformer.from_huggingface(str(directory))


def _edit_config(directory, **changes):
    path = directory / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_config_d_model_does_not_match_weights(zoo, tmp_path):
    # 40 -> 45: still divisible by the 5 heads, so only the tensor shapes disagree.
    directory = _copy_checkpoint(zoo, NAME, tmp_path / "ckpt")
    _edit_config(directory, d_model=45)
    with pytest.raises(ValueError) as excinfo:
        tformer.from_huggingface(str(directory))
    msg = str(excinfo.value)
    assert re.search(r"weight|bias|embed|proj|norm", msg), f"no tensor named: {msg!r}"
    assert "40" in msg and "45" in msg, f"both shapes must appear: {msg!r}"


def test_config_ffn_dim_does_not_match_weights(zoo, tmp_path):
    directory = _copy_checkpoint(zoo, NAME, tmp_path / "ckpt")
    _edit_config(directory, encoder_ffn_dim=73)  # weights have 72
    with pytest.raises(ValueError) as excinfo:
        tformer.from_huggingface(str(directory))
    msg = str(excinfo.value)
    assert re.search(r"fc1|fc2|ffn|linear", msg), f"no tensor named: {msg!r}"
    assert "72" in msg and "73" in msg, f"both shapes must appear: {msg!r}"


def test_config_vocab_does_not_match_weights(zoo, tmp_path):
    directory = _copy_checkpoint(zoo, NAME, tmp_path / "ckpt")
    _edit_config(directory, vocab_size=151)
    with pytest.raises(ValueError) as excinfo:
        tformer.from_huggingface(str(directory))
    msg = str(excinfo.value)
    assert "150" in msg and "151" in msg, f"both shapes must appear: {msg!r}"


def test_tensor_missing_from_weights(zoo, tmp_path):
    directory = _copy_checkpoint(zoo, NAME, tmp_path / "ckpt")
    path = directory / "model.safetensors"
    tensors = safetensors.numpy.load_file(str(path))
    del tensors["model.encoder.layers.1.fc1.weight"]
    safetensors.numpy.save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"(?i)missing|not found|fc1"):
        tformer.from_huggingface(str(directory))


def test_nan_in_weights(zoo, tmp_path):
    directory = _copy_checkpoint(zoo, NAME, tmp_path / "ckpt")
    path = directory / "model.safetensors"
    tensors = safetensors.numpy.load_file(str(path))
    tensors["model.decoder.layers.0.fc2.weight"][3, 4] = np.nan
    safetensors.numpy.save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises((ValueError, RuntimeError), match=r"(?i)nan|finite|inf"):
        tformer.from_huggingface(str(directory))


@pytest.mark.parametrize("model_type", ["pegasus", "bert"])  # t5 is supported since T5 landed
def test_unsupported_model_type(zoo, tmp_path, model_type):
    directory = _copy_checkpoint(zoo, NAME, tmp_path / "ckpt")
    _edit_config(directory, model_type=model_type)
    with pytest.raises(ValueError, match=re.escape(model_type)) as excinfo:
        tformer.from_huggingface(str(directory))
    msg = str(excinfo.value)
    for supported in ("marian", "bart", "mbart", "m2m_100", "t5", "mt5"):
        assert supported in msg, f"supported type {supported!r} not listed: {msg!r}"


# ---- dtype / device ----------------------------------------------------------------

def test_unknown_dtype(zoo, tmp_path):
    with pytest.raises(ValueError, match=r"float13"):
        tformer.from_huggingface(str(zoo.get(NAME).dir), dtype="float13")
    tformer.from_huggingface(str(zoo.get(NAME).dir)).save(str(tmp_path))
    with pytest.raises(ValueError, match=r"float13"):
        tformer.Transformer.load(str(tmp_path), dtype="float13")


def test_unknown_device(zoo, model):
    with pytest.raises(ValueError, match=r"tpu"):
        tformer.from_huggingface(str(zoo.get(NAME).dir), device="tpu")
    with pytest.raises(ValueError, match=r"tpu"):
        model.to("tpu")


@pytest.mark.skipif("tformer.cuda_available()", reason="a GPU is present")
def test_cuda_requested_without_gpu(zoo, model):
    with pytest.raises(RuntimeError, match=r"(?i)cuda|gpu"):
        tformer.from_huggingface(str(zoo.get(NAME).dir), device="cuda")
    with pytest.raises(RuntimeError, match=r"(?i)cuda|gpu"):
        model.to("cuda")

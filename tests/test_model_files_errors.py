"""What a model directory may hold, and how tformer refuses the rest (issue 13: items 1-4
and 7): special ids outside the vocabulary, sizes that would allocate before the weights
are checked, values of the wrong type, weights that are not floats, corrupt safetensors
headers and sharded indexes naming files outside the directory. Cases that crashed the
process before run in a child process, so that a regression fails this test instead of
taking pytest down."""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
import safetensors.numpy
import tformer

NAME = "marian"  # vocab 97, d_model 36, 2+3 layers, max_position_embeddings 40, pad 96, eos 0


@pytest.fixture
def hf_dir(zoo, tmp_path):
    return shutil.copytree(zoo.get(NAME).dir, tmp_path / "hf")


@pytest.fixture(scope="module")
def own_base(zoo, tmp_path_factory):
    directory = tmp_path_factory.mktemp("own") / "model"
    tformer.from_huggingface(str(zoo.get(NAME).dir)).save(str(directory))
    return directory


@pytest.fixture
def own_dir(own_base, tmp_path):
    return shutil.copytree(own_base, tmp_path / "own")


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _edit_own_config(directory, **changes):
    meta = json.loads((directory / "config.json").read_text())
    meta["config"].update(changes)
    (directory / "config.json").write_text(json.dumps(meta))


def _run_child(script, limit_bytes=2 << 30, timeout=120):
    """Runs script in a fresh interpreter under an address-space limit; (returncode, output)."""
    prelude = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes}))\n"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def _load_in_child(call, limit_bytes=2 << 30, timeout=120):
    """`call` (a tformer loading expression) in a child under an address-space limit: the
    output line 'RESULT loaded' or 'RESULT <exception type>: <message>'; the child must not die."""
    code, out = _run_child(f"""
        import tformer
        try:
            {call}
            print("RESULT loaded")
        except Exception as e:
            print(f"RESULT {{type(e).__name__}}: {{e}}")
    """, limit_bytes=limit_bytes, timeout=timeout)
    assert code == 0, f"the child died (exit {code}): {out[-800:]}"
    return out


# ---- 1. special ids of the config -----------------------------------------------------------

@pytest.mark.parametrize("key", ["pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id",
                                 "forced_eos_token_id", "forced_bos_token_id"])
@pytest.mark.parametrize("value", [10 ** 9, -10 ** 8, 97])
def test_hf_config_id_outside_vocab(hf_dir, key, value):
    _edit_json(hf_dir / "config.json", **{key: value})
    with pytest.raises(ValueError, match=rf"config\.json: {key} {value} is outside the vocabulary \[0, 97\)"):
        tformer.from_huggingface(str(hf_dir))


@pytest.mark.parametrize("key", ["pad_token_id", "eos_token_id", "decoder_start_token_id", "forced_eos_token_id"])
def test_generation_config_id_outside_vocab(hf_dir, key):
    _edit_json(hf_dir / "generation_config.json", **{key: 10 ** 9})
    with pytest.raises(ValueError, match=rf"generation_config\.json: {key} 1000000000 is outside the vocabulary"):
        tformer.from_huggingface(str(hf_dir))


def test_generation_config_bad_words_outside_vocab(hf_dir):
    _edit_json(hf_dir / "generation_config.json", bad_words_ids=[[5], [6, -3]])
    with pytest.raises(ValueError, match=r"bad_words_ids -3 is outside the vocabulary \[0, 97\)"):
        tformer.from_huggingface(str(hf_dir))


@pytest.mark.parametrize("field", ["pad_id", "eos_id", "bos_id", "decoder_start_id"])
def test_own_format_id_outside_vocab(own_dir, field):
    _edit_own_config(own_dir, **{field: 10 ** 9})
    with pytest.raises(ValueError, match=rf"config\.json: {field} must be in \[0, tgt_vocab_size = 97\)"):
        tformer.Transformer.load(str(own_dir))


def test_own_format_generation_settings_outside_vocab(own_dir):
    meta = json.loads((own_dir / "config.json").read_text())
    meta["config"]["extra"]["generation"]["forced_eos_token_id"] = -10 ** 8
    (own_dir / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"config\.json \(extra\.generation\): forced_eos_token_id -100000000 is "
                                         r"outside the vocabulary \[0, 97\)"):
        tformer.Transformer.load(str(own_dir))


def test_core_config_validate_refuses_pad_outside_target_vocab():
    """The C++ check, for whoever builds a config without the Python class."""
    core = tformer.TransformerConfig(src_vocab_size=50, tgt_vocab_size=40, shared_embeddings=False,
                                     tied_output=False, d_model=8, encoder_heads=2, decoder_heads=2).to_core()
    core.pad_id = 40
    with pytest.raises(ValueError, match=r"pad_id must be in \[0, 39\], got 40"):
        core.validate()
    core.pad_id = -5
    with pytest.raises(ValueError, match=r"pad_id must be in \[0, 39\], got -5"):
        core.validate()


def test_valid_ids_still_load(hf_dir):
    _edit_json(hf_dir / "config.json", pad_token_id=95, decoder_start_token_id=95, eos_token_id=[3, 0])
    model = tformer.from_huggingface(str(hf_dir))
    assert (model.config.pad_id, model.config.decoder_start_id, model.config.eos_id) == (95, 95, 3)
    _edit_json(hf_dir / "config.json", pad_token_id=None)  # null: transformers' default, 1
    assert tformer.from_huggingface(str(hf_dir)).config.pad_id == 1


# ---- 2. fairseq positions with a negative pad id (was a segfault in encode) ---------------------

@pytest.mark.parametrize("pad_id", [-10 ** 8, -2])
def test_count_non_pad_with_negative_pad_id(own_dir, pad_id):
    _edit_own_config(own_dir, position_ids="count_non_pad", pad_id=pad_id)
    code, out = _run_child(f"""
        import tformer
        try:
            model = tformer.Transformer.load({str(own_dir)!r})
            model.encode([[5, 6, 7, 0]])
            print("RESULT loaded and encoded")
        except ValueError as e:
            print("RESULT ValueError:", e)
    """)
    assert code == 0, f"the child died (exit {code}): {out[-800:]}"
    assert re.search(r"RESULT ValueError: .*config\.json: pad_id must be in \[0, tgt_vocab_size = 97\), got "
                     + str(pad_id), out), out[-800:]


def test_count_non_pad_pad_id_beyond_positions(own_dir):
    # pad 50 is in the vocabulary, but the first position would be row 51 of a 40-row table.
    _edit_own_config(own_dir, position_ids="count_non_pad", pad_id=50)
    with pytest.raises(ValueError, match=r"count_non_pad, pad_id must be in \[0, max_positions - 1 = 39\)"):
        tformer.Transformer.load(str(own_dir))


# ---- 3. nothing sized from the config before the weights are checked --------------------------

def test_huge_max_position_embeddings_is_refused_before_allocating(hf_dir):
    _edit_json(hf_dir / "config.json", max_position_embeddings=2 * 10 ** 7)
    out = _load_in_child(f"tformer.from_huggingface({str(hf_dir)!r})")
    assert re.search(r"RESULT ValueError: .*config\.json: max_positions must be in \[1, 1048576\], got 20000000",
                     out), out[-800:]


def test_position_table_is_not_built_before_the_embedding_is_checked(hf_dir):
    """Within the bounds, a large table is only made once the embedding matrix agrees with
    the config: a vocabulary mismatch is refused without allocating the 10^6-row table
    (288 MB of float64 sinusoids before the fix)."""
    _edit_json(hf_dir / "config.json", max_position_embeddings=10 ** 6, vocab_size=98)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"'model\.shared\.weight' has shape \(97, 36\) .* expects \(98, 36\)"):
            tformer.from_huggingface(str(hf_dir))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak / 2 ** 20:.0f} MiB allocated before the weights were checked"


def test_huge_layer_count_in_own_format(own_dir):
    _edit_own_config(own_dir, encoder_layers=10 ** 8)
    out = _load_in_child(f"tformer.Transformer.load({str(own_dir)!r})", timeout=60)
    assert re.search(r"RESULT ValueError: .*config\.json: encoder_layers must be in \[1, 1024\], got 100000000",
                     out), out[-800:]


def test_layer_count_is_checked_against_the_weights_in_own_format(own_dir):
    _edit_own_config(own_dir, encoder_layers=1000)
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor 'encoder\.layers\.2\.[a-z_.]+' missing"):
        tformer.Transformer.load(str(own_dir))


# ---- 4. silent garbage: types, non-float weights, corrupt headers -------------------------------

@pytest.mark.parametrize("key,value", [("d_model", 36.9), ("d_model", 36.0), ("encoder_layers", True),
                                       ("vocab_size", "97"), ("max_position_embeddings", 40.5)])
def test_hf_config_values_must_be_integers(hf_dir, key, value):
    _edit_json(hf_dir / "config.json", **{key: value})
    with pytest.raises(ValueError, match=rf"config\.json: '?{key}'? (must be an integer, got {re.escape(repr(value))}"
                                         r"|is missing)"):
        tformer.from_huggingface(str(hf_dir))


def test_hf_config_switches_must_be_booleans(hf_dir):
    _edit_json(hf_dir / "config.json", scale_embedding="false")
    with pytest.raises(ValueError, match=r"config\.json: scale_embedding must be true or false, got 'false'"):
        tformer.from_huggingface(str(hf_dir))


@pytest.mark.parametrize("field,value,kind", [("d_model", 36.9, "an int"), ("encoder_layers", True, "an int"),
                                              ("pre_norm", 1, "true or false"), ("activation", 5, "a string")])
def test_own_format_values_of_the_wrong_type(own_dir, field, value, kind):
    _edit_own_config(own_dir, **{field: value})
    with pytest.raises(TypeError) as excinfo:
        tformer.Transformer.load(str(own_dir))
    msg = str(excinfo.value)
    assert f"{field} must be {kind}, got" in msg and "config.json" in msg, msg
    assert "incompatible" not in msg and "_core" not in msg, f"binding internals in the message: {msg}"


@pytest.mark.parametrize("fmt", ["hf", "own"])
@pytest.mark.parametrize("text", ["[1, 2]", '"marian"', "null"])
def test_config_json_that_is_not_an_object(hf_dir, own_dir, fmt, text):
    directory = hf_dir if fmt == "hf" else own_dir
    (directory / "config.json").write_text(text)
    load = tformer.from_huggingface if fmt == "hf" else tformer.Transformer.load
    with pytest.raises(ValueError, match=r"config\.json: expected a JSON object"):
        load(str(directory))


def test_own_format_without_a_config_object(own_dir):
    (own_dir / "config.json").write_text(json.dumps({"format": "tformer", "format_version": 1}))
    with pytest.raises(ValueError, match=r"config\.json: expected a 'config' object"):
        tformer.Transformer.load(str(own_dir))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8])
def test_integer_weights_are_refused(hf_dir, dtype):
    path = hf_dir / "model.safetensors"
    tensors = safetensors.numpy.load_file(str(path))
    name = "model.encoder.layers.0.fc1.weight"
    tensors[name] = np.ones(tensors[name].shape, dtype)
    safetensors.numpy.save_file(tensors, str(path), metadata={"format": "pt"})
    stored = {np.int32: "I32", np.int64: "I64", np.uint8: "U8"}[dtype]
    with pytest.raises(ValueError, match=rf"model\.safetensors: tensor '{re.escape(name)}' is stored as {stored}: "
                                         "weights must be floating point"):
        tformer.from_huggingface(str(hf_dir))


def test_integer_weights_in_pytorch_bin_are_refused(zoo, tmp_path):
    import torch
    directory = shutil.copytree(zoo.get(NAME).dir, tmp_path / "bin")
    tensors = safetensors.numpy.load_file(str(directory / "model.safetensors"))
    (directory / "model.safetensors").unlink()
    state = {k: torch.from_numpy(v) for k, v in tensors.items()}
    name = "model.decoder.layers.1.fc2.bias"
    state[name] = torch.ones(state[name].shape, dtype=torch.int32)
    torch.save(state, str(directory / "pytorch_model.bin"))
    with pytest.raises(ValueError, match=rf"pytorch_model\.bin: tensor '{re.escape(name)}' is stored as int32"):
        tformer.from_huggingface(str(directory))


def _rewrite_header(path, edit):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header = edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def _set_offsets(name, offsets_of):
    def edit(header):
        header[name]["data_offsets"] = offsets_of(header[name]["data_offsets"], header)
        return header
    return edit


W = "model.encoder.layers.0.fc1.weight"
OTHER = "model.encoder.layers.0.fc2.weight"


@pytest.mark.parametrize("edit,problem", [
    (lambda h: [h], r"a JSON object is expected, got list"),
    (lambda h: "header", r"a JSON object is expected, got str"),
    (_set_offsets(W, lambda o, h: o[::-1]), r"tensor '.*fc1\.weight' has data_offsets \[\d+, \d+\] \(expected"),
    (_set_offsets(W, lambda o, h: [-o[1], -o[0]]), r"tensor '.*fc1\.weight' has data_offsets \[-\d+, -\d+\]"),
    (_set_offsets(W, lambda o, h: [o[0]]), r"tensor '.*fc1\.weight' has data_offsets \[\d+\]"),
    (_set_offsets(W, lambda o, h: h[OTHER]["data_offsets"][:1] + [h[OTHER]["data_offsets"][0] + o[1] - o[0]]),
     r"overlaps another tensor"),
    (_set_offsets(W, lambda o, h: [o[0] + 10 ** 7, o[1] + 10 ** 7]), r"the header describes \d+ bytes, the file has"),
    (lambda h: {**h, W: {**h[W], "shape": [36, 64, 2]}}, r"needs \d+ bytes, its data_offsets .* hold \d+"),
    (lambda h: {**h, W: {**h[W], "shape": [36.0, 64.0]}}, r"tensor '.*fc1\.weight' has shape \[36\.0, 64\.0\]"),
    (lambda h: {**h, W: [1, 2]}, r"entry '.*fc1\.weight' needs dtype, shape and data_offsets"),
])
def test_corrupt_safetensors_header(hf_dir, edit, problem):
    path = hf_dir / "model.safetensors"
    _rewrite_header(path, edit)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": (corrupt|truncated) safetensors .*" + problem):
        tformer.from_huggingface(str(hf_dir))


def test_corrupt_header_in_own_format(own_dir):
    _rewrite_header(own_dir / "model.safetensors", lambda h: list(h))
    with pytest.raises(ValueError, match=r"model\.safetensors: corrupt safetensors header: a JSON object"):
        tformer.Transformer.load(str(own_dir))


# ---- 7. sharded indexes name files inside the model directory only ------------------------------

def _shard(zoo, directory, shard_path):
    """directory holds config.json + an index naming shard_path for every tensor; the
    shard (the whole model.safetensors) is written at shard_path (relative to directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    source = zoo.get(NAME).dir
    for f in ("config.json", "generation_config.json"):
        shutil.copy(source / f, directory / f)
    target = directory / shard_path if not os.path.isabs(shard_path) else shard_path
    os.makedirs(os.path.dirname(os.path.normpath(target)), exist_ok=True)
    shutil.copy(source / "model.safetensors", os.path.normpath(target))
    names = safetensors.numpy.load_file(str(source / "model.safetensors"))
    index = {"metadata": {}, "weight_map": {k: str(shard_path) for k in names}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("shard", ["../outside/model-00001-of-00001.safetensors",
                                   "sub/../../outside/model-00001-of-00001.safetensors", "ABSOLUTE"])
def test_shard_outside_the_directory_is_refused(zoo, tmp_path, shard):
    if shard == "ABSOLUTE":
        shard = str(tmp_path / "elsewhere" / "model-00001-of-00001.safetensors")
    _shard(zoo, tmp_path / "models" / "m", shard)
    with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json: shard .* is outside the model directory"):
        tformer.from_huggingface(str(tmp_path / "models" / "m"))


def test_shard_symlinked_outside_the_directory_is_refused(zoo, tmp_path):
    directory = tmp_path / "m"
    _shard(zoo, directory, "model-00001-of-00001.safetensors")
    outside = tmp_path / "secret.safetensors"
    (directory / "model-00001-of-00001.safetensors").rename(outside)
    (directory / "model-00001-of-00001.safetensors").symlink_to(outside)
    with pytest.raises(ValueError, match=r"shard 'model-00001-of-00001\.safetensors' is outside the model directory"):
        tformer.from_huggingface(str(directory))


def test_shards_inside_the_directory_and_the_hub_cache_load(zoo, tmp_path):
    reference = tformer.from_huggingface(str(zoo.get(NAME).dir)).forward([[5, 6, 0]], [[96, 4]])
    _shard(zoo, tmp_path / "plain", "shards/model-00001-of-00001.safetensors")
    # The hub cache: snapshots/<revision>/<file> are links to ../../blobs/<hash>.
    snapshot = tmp_path / "models--x--y" / "snapshots" / "abc123"
    _shard(zoo, snapshot, "model-00001-of-00001.safetensors")
    blobs = tmp_path / "models--x--y" / "blobs"
    blobs.mkdir()
    (snapshot / "model-00001-of-00001.safetensors").rename(blobs / "f00d")
    (snapshot / "model-00001-of-00001.safetensors").symlink_to("../../blobs/f00d")
    for directory in (tmp_path / "plain", snapshot):
        logits = tformer.from_huggingface(str(directory)).forward([[5, 6, 0]], [[96, 4]])
        np.testing.assert_array_equal(logits, reference)

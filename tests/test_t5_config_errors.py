"""Bad T5 settings are ValueErrors that name the key: in a Hugging Face T5 config.json
(from_huggingface) and in TransformerConfig's T5 fields."""
import json
import math
import shutil

import numpy as np
import pytest
import safetensors.numpy
import tformer

T5_FIELDS = dict(src_vocab_size=40, tgt_vocab_size=40, d_model=24, encoder_layers=1, decoder_layers=1,
                 encoder_heads=3, decoder_heads=3, encoder_ffn_dim=32, decoder_ffn_dim=32, head_dim=10,
                 rms_norm=True, linear_bias=False, attention_scale=1.0, gated_ffn=True, activation="gelu_tanh",
                 positions="none", relative_attention_buckets=8, relative_attention_max_distance=12, pre_norm=True,
                 encoder_final_norm=True, decoder_final_norm=True, embed_scale=1.0, pad_id=0, eos_id=1,
                 decoder_start_id=0)


def _copy(t5_zoo, tmp_path, name="t5_v11"):
    return shutil.copytree(t5_zoo(name).dir, tmp_path / "ckpt")


def _edit(directory, **changes):
    path = directory / "config.json"
    cfg = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path.write_text(json.dumps(cfg))


@pytest.mark.parametrize("key,value,pattern", [
    ("d_kv", None, r"'d_kv' is missing"),
    ("d_kv", "8", r"d_kv must be an integer"),
    ("d_kv", 0, r"d_kv must be >= 1"),
    ("num_heads", 2.5, r"num_heads must be an integer"),
    ("num_decoder_layers", 0, r"num_decoder_layers must be >= 1"),
    ("d_ff", True, r"d_ff must be an integer"),
    ("feed_forward_proj", "gated-gelu-new", r"feed_forward_proj must be 'ACT' or 'gated-ACT'"),
    ("feed_forward_proj", "ungated-gelu", r"feed_forward_proj must be 'ACT' or 'gated-ACT'"),
    ("feed_forward_proj", "gated-tanh", r"feed_forward_proj 'gated-tanh'.*unsupported activation"),
    ("feed_forward_proj", 3, r"feed_forward_proj must be a string"),
    ("relative_attention_num_buckets", 2, r"relative_attention_num_buckets must be >= 4"),
    ("relative_attention_max_distance", 16, r"relative_attention_max_distance must be > "
                                            r"relative_attention_num_buckets / 2 = 16"),
    ("layer_norm_epsilon", "1e-6", r"layer_norm_epsilon must be a number"),
    ("scale_decoder_outputs", "yes", r"scale_decoder_outputs must be true or false"),
    ("tie_word_embeddings", 1, r"tie_word_embeddings must be true or false"),
    ("decoder_start_token_id", 500, r"decoder_start_token_id 500 is outside the vocabulary"),
    ("eos_token_id", -1, r"eos_token_id -1 is outside the vocabulary"),
])
def test_bad_hf_t5_config(t5_zoo, tmp_path, key, value, pattern):
    directory = _copy(t5_zoo, tmp_path)
    _edit(directory, **{key: value})
    with pytest.raises(ValueError, match=pattern) as info:
        tformer.from_huggingface(str(directory))
    assert "config.json" in str(info.value)


@pytest.mark.parametrize("key,value,tensor", [
    ("d_model", 28, "shared.weight"),
    ("relative_attention_num_buckets", 16, "relative_attention_bias"),
])
def test_t5_config_disagreeing_with_the_weights(t5_zoo, tmp_path, key, value, tensor):
    directory = _copy(t5_zoo, tmp_path)
    _edit(directory, **{key: value})
    with pytest.raises(ValueError, match=rf"{tensor}.*{key}"):
        tformer.from_huggingface(str(directory))


def _copy_without(t5_zoo, tmp_path, name):
    """A copy of the T5 checkpoint without the tensor `name`: (directory, the tensors kept)."""
    directory = _copy(t5_zoo, tmp_path)
    path = directory / "model.safetensors"
    tensors = safetensors.numpy.load_file(str(path))
    del tensors[name]
    safetensors.numpy.save_file(tensors, str(path), metadata={"format": "pt"})
    return directory, tensors


def test_t5_missing_tensor_is_named(t5_zoo, tmp_path):
    directory, _ = _copy_without(t5_zoo, tmp_path, "decoder.block.0.layer.2.DenseReluDense.wi_1.weight")
    with pytest.raises(ValueError, match=r"decoder\.block\.0\.layer\.2\.DenseReluDense\.wi_1\.weight.*missing"):
        tformer.from_huggingface(str(directory))


def test_t5_head_follows_the_checkpoint(t5_zoo, tmp_path):
    """A checkpoint without lm_head.weight is tied to shared, as transformers ties it."""
    directory, tensors = _copy_without(t5_zoo, tmp_path, "lm_head.weight")
    model = tformer.from_huggingface(str(directory))
    assert model.config.tied_output and "out_proj" not in model.config.to_core().parameter_shapes()
    np.testing.assert_array_equal(model.parameters()["src_embed"], tensors["shared.weight"])


def test_t5_config_fields_work():
    model = tformer.Transformer(tformer.TransformerConfig(**T5_FIELDS), seed=0)
    names = dict(model.config.to_core().parameter_shapes())
    assert names["encoder.relative_attention_bias"] == (8, 3)
    assert names["encoder.layers.0.self_attn.qkv.weight"] == (90, 24)
    assert names["decoder.layers.0.cross_attn.kv.weight"] == (60, 24)
    assert names["decoder.layers.0.self_attn.out.weight"] == (24, 30)
    assert names["decoder.layers.0.ffn.fc1.weight"] == (64, 24)
    assert not any(n.endswith((".bias", ".beta")) or "positions" in n for n in names)
    logits = model.forward([[3, 4, 5, 1]], [[0, 7, 8]])
    assert logits.shape == (1, 3, 40) and np.all(np.isfinite(logits))


@pytest.mark.parametrize("key,value,pattern", [
    ("head_dim", -1, r"head_dim must be in \[0,"),
    ("head_dim", 1.5, r"head_dim must be an int"),
    ("relative_attention_buckets", 2, r"relative_attention_buckets must be in \[4,"),
    ("relative_attention_buckets", -3, r"relative_attention_buckets must be in \[0,"),
    ("relative_attention_max_distance", 4, r"relative_attention_max_distance must be in \[5,"),
    ("attention_scale", -1.0, r"attention_scale must be a finite number >= 0"),
    ("attention_scale", math.nan, r"attention_scale must be a finite number"),
    ("logits_scale", math.inf, r"logits_scale must be a finite number"),
    ("positions", "relative", r"positions must be one of .*none"),
])
def test_bad_t5_transformer_config(key, value, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        tformer.TransformerConfig(**{**T5_FIELDS, key: value})


def test_heads_not_dividing_d_model_without_head_dim():
    with pytest.raises(ValueError, match=r"d_model 24 is not divisible by encoder_heads 5 \(or set head_dim\)"):
        tformer.TransformerConfig(**{**T5_FIELDS, "head_dim": 0, "encoder_heads": 5})
    tformer.TransformerConfig(**{**T5_FIELDS, "head_dim": 7, "encoder_heads": 5})  # fine with head_dim

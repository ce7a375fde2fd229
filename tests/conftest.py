"""Fixtures shared by the whole suite.

* ``device``: every device-aware test runs on "cpu" and on "cuda"; the CUDA case is
  skipped only where ``tformer.cuda_available()`` is False.
* ``zoo``: tiny Hugging Face checkpoints (random weights, built locally, no hub access),
  written once per session under tmp_path_factory, with their float64 transformers
  reference models.
"""

import pytest
import tformer

import tf_testlib as lib

@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not tformer.cuda_available():
        pytest.skip("tformer.cuda_available() is False")
    return request.param


class Checkpoint:
    def __init__(self, name, directory, reference):
        self.name = name
        self.dir = directory
        self.ref = reference            # transformers model, float64, eval mode
        self.spec = lib.MODEL_SPECS[name]
        self.hf_config = reference.config

    def batch(self, src_lens, tgt_lens, seed=0):
        return lib.make_batch(self.name, src_lens, tgt_lens, seed=seed)

    def hf_logits(self, src, tgt):
        return lib.hf_logits(self.ref, self.name, src, tgt)

    def hf_encoder_output(self, src):
        return lib.hf_encoder_output(self.ref, self.name, src)


class Zoo:
    """Builds each checkpoint on first use and keeps it for the session."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self._cache = {}

    def get(self, name, weights="safetensors"):
        key = (name, weights)
        if key not in self._cache:
            model = lib.build_hf_model(name, seed=sorted(lib.MODEL_SPECS).index(name))
            directory = self._tmp.mktemp(f"hf_{name}_{weights}")
            lib.save_hf_model(model, directory, weights=weights)
            reference = lib.load_hf_reference(name, directory)
            self._cache[key] = Checkpoint(name, directory, reference)
        return self._cache[key]


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    return Zoo(tmp_path_factory)


@pytest.fixture(scope="session")
def loaded(zoo):
    """loaded(name, device) -> tformer.Transformer from the HF checkpoint, cached for the
    session (for tests that only call forward / encode on it)."""
    cache = {}

    def get(name, device="cpu"):
        if (name, device) not in cache:
            cache[(name, device)] = tformer.from_huggingface(str(zoo.get(name).dir),
                                                             device=device, dtype="float32")
        return cache[(name, device)]

    return get

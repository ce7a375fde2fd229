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


class GenCheckpoint:
    """A GEN_SPECS checkpoint (tf_testlib): its directory, its float64 transformers
    reference read back from that directory (so generation_config.json is the one
    tformer reads), and the special ids."""

    def __init__(self, name, directory):
        self.name = name
        self.base = lib.GEN_SPECS[name]["base"]
        self.dir = directory
        self.ref = lib.load_hf_reference(self.base, directory)
        spec = lib.MODEL_SPECS[self.base]
        self.pad, self.eos, self.start = spec["pad"], spec["eos"], spec["start"]
        self.src_vocab, self.tgt_vocab = lib.vocab_sizes(self.base)
        self._models = {}
        self._hf = {}

    def model(self, device="cpu"):
        """tformer.Transformer of this directory (float32), cached per device."""
        if device not in self._models:
            self._models[device] = tformer.from_huggingface(str(self.dir), device=device,
                                                            dtype="float32")
        return self._models[device]

    def hf(self, src, generation_config=None, attention=False, **options):
        """lib.hf_generate on this checkpoint, cached (the reference does not depend on
        the device under test)."""
        key = (repr(src), repr(sorted(options.items())), attention,
               None if generation_config is None else generation_config.to_json_string())
        if key not in self._hf:
            self._hf[key] = lib.hf_generate(self.ref, self.base, src,
                                            generation_config=generation_config,
                                            attention=attention, **options)
        return self._hf[key]


@pytest.fixture(scope="session")
def gen_zoo(tmp_path_factory):
    """gen_zoo(name) -> GenCheckpoint, built once per session."""
    cache = {}

    def get(name):
        if name not in cache:
            directory = tmp_path_factory.mktemp(f"gen_{name}") / name
            lib.save_gen_checkpoint(name, directory)
            cache[name] = GenCheckpoint(name, directory)
        return cache[name]

    return get

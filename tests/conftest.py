"""Fixtures shared by the whole suite.

* ``device``: every device-aware test runs on "cpu" and on "cuda"; the CUDA case is
  skipped only where ``tformer.cuda_available()`` is False.
* TFORMER_TEST_EMULATED_CUDA=1: only the cases of tests/emulated_cuda.txt, with "cuda"
  being the CPU emulator's library (see the end of this file).
* ``zoo``: tiny Hugging Face checkpoints (random weights, built locally, no hub access),
  written once per session under tmp_path_factory, with their float64 transformers
  reference models.
"""

import os
import re

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


class T5Checkpoint:
    """A t5_testlib.T5_SPECS checkpoint: its directory, its float64 transformers reference
    read back from it, and tformer models of it (cached per device)."""

    def __init__(self, name, directory):
        import t5_testlib
        self.name = name
        self.dir = directory
        self.ref = t5_testlib.reference(name, directory)
        self._models = {}

    def model(self, device="cpu"):
        if device not in self._models:
            self._models[device] = tformer.from_huggingface(str(self.dir), device=device, dtype="float32")
        return self._models[device]


@pytest.fixture(scope="session")
def t5_zoo(tmp_path_factory):
    """t5_zoo(name) -> T5Checkpoint, built once per session."""
    import t5_testlib
    cache = {}

    def get(name):
        if name not in cache:
            directory = tmp_path_factory.mktemp(f"t5_{name}")
            model = t5_testlib.build(name, seed=t5_testlib.T5_NAMES.index(name))
            t5_testlib.save(model, name, directory)
            cache[name] = T5Checkpoint(name, directory)
        return cache[name]
    return get


# ---- the emulated CUDA run (an extra CI step: bench/gpu/emulate/README.md) ----------------
# TFORMER_TEST_EMULATED_CUDA=1, with TFORMER_CUDA_LIBRARY naming bench/gpu/emulate's
# libtformer_cuda_emulated.so, runs only the cases listed in tests/emulated_cuda.txt (the
# rest are deselected, and counted as such by pytest), on the real CUDA kernel code on the
# CPU emulator. It stops at once when that library is not what runs "cuda", and when a
# listed pattern matches nothing in a file that was collected, so neither a missing
# library nor a renamed test can make the step pass by running nothing.

EMULATED_LIST = os.path.join(os.path.dirname(__file__), "emulated_cuda.txt")


def emulated_cuda_run():
    return os.environ.get("TFORMER_TEST_EMULATED_CUDA", "") not in ("", "0")


def emulated_cuda_patterns(path=EMULATED_LIST):
    """The node-id patterns of the list: one a line, `*` matches anything (also in the file
    part: tests/ops/*::*cuda* is every cuda case of the directory), # comments."""
    with open(path, encoding="utf-8") as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    return [line for line in lines if line]


def _pattern_regex(pattern):
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z")


def pytest_configure(config):
    if not emulated_cuda_run():
        return
    name = tformer.build_info().get("cuda_backend", "")
    if not tformer.cuda_available() or "emulator" not in name:
        raise pytest.UsageError(
            "TFORMER_TEST_EMULATED_CUDA=1 needs TFORMER_CUDA_LIBRARY=<.../libtformer_cuda_emulated.so> "
            "(bash bench/gpu/emulate/build_library.sh); cuda is "
            + (repr(name) if name else "unavailable: " + tformer.build_info().get("cuda_unavailable_reason", "")))


def pytest_collection_modifyitems(config, items):
    if not emulated_cuda_run():
        return
    patterns = [(p, _pattern_regex(p)) for p in emulated_cuda_patterns()]
    files = {item.nodeid.split("::", 1)[0] for item in items}
    stale = [p for p, rx in patterns
             if any(_pattern_regex(p.split("::", 1)[0]).match(f) for f in files)
             and not any(rx.match(item.nodeid) for item in items)]
    if stale:
        raise pytest.UsageError(f"{EMULATED_LIST}: no collected test matches " + ", ".join(stale))
    keep = [item for item in items if any(rx.match(item.nodeid) for _, rx in patterns)]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep

"""The counter RNG of cpp/include/tformer/random.h, shared by the CPU and CUDA dropout kernels
and by sampling in decoding, against a pure-Python SplitMix64 (Steele et al. 2014):

* the header compiled as host C++ gives the Python draws bit for bit (the CUDA kernel
  compiles the same functions for the device, so a mask is the same on both devices);
* the CPU dropout kernel keeps exactly the elements whose draw is >= p;
* on a GPU, the CUDA kernel's mask and values equal the CPU's (skipped without one).
"""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tformer
from tformer import ops

ROOT = Path(__file__).resolve().parents[2]
MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(x):
    x = (x + GOLDEN) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def dropout_draws(seed, offset, n):
    """Element i's uniform: the top 24 bits of splitmix64(key + (offset + i) * golden) / 2^24."""
    key = splitmix64(seed)
    return np.array([(splitmix64((key + (offset + i) * GOLDEN) & MASK64) >> 40) / 2.0 ** 24 for i in range(n)])


def uniform01(seed, source, step, k):
    h = splitmix64(splitmix64(splitmix64(seed ^ 0x5DEECE66D) ^ source) ^ ((step * 0x100000001B3 + k) & MASK64))
    return (h >> 11) / 2.0 ** 53


CASES = [(0, 0), (1234, 0), (7, 1 << 33), (2 ** 64 - 1, 2 ** 40 + 5)]

PROGRAM = r"""
#include <cinttypes>
#include <cstdio>
#include "tformer/random.h"
using namespace tformer::rng;
int main() {
  const uint64_t cases[][2] = {%s};
  for (const auto& c : cases) {
    const uint64_t key = dropout_key(c[0]);
    for (uint64_t i = 0; i < 64; ++i) std::printf("%%.0f\n", double(dropout_draw(key, c[1] + i)) * 16777216.0);  // exact
    std::printf("%%.17g\n", uniform01(c[0], c[1], 3, 11));
  }
}
"""


def test_header_compiled_as_host_code_matches_python(tmp_path):
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    assert cxx, "no C++ compiler on PATH (the project builds with one)"
    src = tmp_path / "rng.cpp"
    src.write_text(PROGRAM % ", ".join(f"{{{s}ull, {o}ull}}" for s, o in CASES))
    exe = tmp_path / "rng"
    subprocess.run([cxx, "-std=c++17", "-O2", f"-I{ROOT / 'cpp' / 'include'}", str(src), "-o", str(exe)], check=True)
    got = [float(x) for x in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()]
    want = []
    for seed, offset in CASES:  # draws in units of 2^-24; uniform01 printed with 17 digits (exact)
        want += list(dropout_draws(seed, offset, 64) * 2.0 ** 24) + [uniform01(seed, offset, 3, 11)]
    assert got == want


@pytest.mark.parametrize("seed,offset", CASES)
@pytest.mark.parametrize("p", [0.25, 0.5])
def test_cpu_dropout_mask_is_the_documented_draw(seed, offset, p):
    n = 1000
    x = np.arange(1, n + 1, dtype=np.float32)  # never 0
    out = ops.dropout(x, p, seed=seed, offset=offset)
    np.testing.assert_array_equal(out != 0, dropout_draws(seed, offset, n) >= p)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cuda_dropout_equals_cpu(dtype):
    if not tformer.cuda_available():
        pytest.skip("tformer.cuda_available() is False")
    rng = np.random.default_rng(3)  # |x| >= 0.5: nonzero in every dtype, so 0 means dropped
    x = (rng.uniform(0.5, 2.0, 100_003) * rng.choice([-1.0, 1.0], 100_003)).astype(np.float32)
    for seed, offset in CASES:
        cpu = ops.dropout(x, 0.3, seed=seed, offset=offset)
        gpu = np.asarray(ops.dropout(x, 0.3, seed=seed, offset=offset, device="cuda", dtype=dtype), np.float32)
        np.testing.assert_array_equal(gpu != 0, cpu != 0)
        if dtype == "float32":
            np.testing.assert_array_equal(gpu, cpu)

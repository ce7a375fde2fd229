"""The CPU int8 GEMM kernels (cpp/ops/int8/) against a NumPy simulation of the rule of
tformer/ops/int8.h (int8_testlib.py: float32 quantization, exact int64 sums, the float32
epilogue in the contract's order), bit for bit, and against each other:

* every kernel this CPU has (TFORMER_INT8_KERNEL=avx512_vnni / avx_vnni / avx2 / base, each in
  a fresh process, as the choice is made once), each SIMD kernel on both of its paths
  (TFORMER_INT8_PANEL_ROWS: weights read in place / packed panels) and on its own choice:
  the same inputs give the same bits, and the bits of the simulation;
* m = 1..300, n and k off the vector widths (k = 1, 3, 17, 63, 65, 511, 2049, ...), bias and
  alpha, zero rows, huge and tiny magnitudes, the largest sums (k = 131072, |q| = 127);
* quantize_rows / dequantize_rows against NumPy, the kernel choice (TFORMER_CPU_ISA caps it),
  and the errors of the bindings.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from tformer import ops

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import int8_testlib as sim  # noqa: E402


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


FLAGS = _cpu_flags()
KERNELS = ["base"] + [name for name, flag in (("avx2", "avx2"), ("avx_vnni", "avx_vnni"),
                                              ("avx512_vnni", "avx512_vnni")) if flag in FLAGS]


def _cases():
    """(x, weight q, weight scale, bias or None, alpha) for every shape the tests cover."""
    rng = np.random.default_rng(15)
    cases = []

    def add(m, n, k, bias=True, alpha=1.0, x=None, w=None):
        if x is None:
            x = rng.standard_normal((m, k)).astype(np.float32)
        if w is None:
            w = rng.standard_normal((n, k)).astype(np.float32)
        q, s = sim.quantize(w)
        b = rng.standard_normal(n).astype(np.float32) if bias else None
        cases.append((x, q, s, b, np.float32(alpha)))

    for k in (1, 3, 17, 63, 64, 65, 511, 512, 2049):
        for m, n in ((1, 7), (5, 67), (37, 4), (9, 130)):
            add(m, n, k, bias=(k % 2 == 1), alpha=0.75 if m == 5 else 1.0)
    for m in list(range(1, 10)) + [127, 128, 129, 300]:
        add(m, 70, 130, alpha=-1.5)
    # Zero rows, huge and tiny magnitudes, a single nonzero, rows of one value.
    x = rng.standard_normal((8, 96)).astype(np.float32)
    x[1] = 0
    x[2] *= np.float32(3e37)
    x[3] *= np.float32(1e-30)
    x[4] = 0
    x[4, 50] = -2.5
    x[5] = 7.0
    w = rng.standard_normal((33, 96)).astype(np.float32)
    w[3] = 0
    w[4] *= np.float32(1e30)
    add(8, 33, 96, x=x, w=w)
    # The largest sums: every product 127 * 127 (or -127 * 127), k = 131072 = kInt8GemmMaxK.
    k = 131072
    x = np.ones((3, k), np.float32)
    x[1] = -1
    x[2, ::2] = -1
    w = np.ones((5, k), np.float32)
    w[1] = -1
    add(3, 5, k, bias=False, x=x, w=w)
    return cases


def _run(x, q, s, b, alpha):
    return ops.int8_linear(x, q, s, b, float(alpha))


RUN_ALL = r"""
import sys
import numpy as np
from tformer import ops
data = np.load(sys.argv[1])
out = {}
for i in range(int(data["count"])):
    b = data[f"b{i}"] if f"b{i}" in data else None
    out[f"c{i}"] = ops.int8_linear(data[f"x{i}"], data[f"q{i}"], data[f"s{i}"], b, float(data[f"alpha{i}"]))
out["kernel"] = np.array(ops.cpu_int8_kernel())
np.savez(sys.argv[2], **out)
"""


@pytest.fixture(scope="module")
def kernel_outputs(tmp_path_factory):
    """{kernel: [C of each case]}, each kernel run in its own process."""
    cases = _cases()
    tmp = tmp_path_factory.mktemp("int8")
    arrays = {"count": np.array(len(cases))}
    for i, (x, q, s, b, alpha) in enumerate(cases):
        arrays.update({f"x{i}": x, f"q{i}": q, f"s{i}": s, f"alpha{i}": alpha})
        if b is not None:
            arrays[f"b{i}"] = b
    np.savez(tmp / "in.npz", **arrays)
    outputs = {}
    for kernel in KERNELS:
        # Each SIMD kernel three ways: its own choice of path by row count, every row count
        # on the in-place (few rows) path, every row count on the packed-panel path.
        for panel_rows in ([""] if kernel == "base" else ["", "100000", "1"]):
            env = dict(os.environ, TFORMER_INT8_KERNEL=kernel, TFORMER_INT8_PANEL_ROWS=panel_rows)
            name = f"{kernel}/{panel_rows or 'auto'}"
            out = tmp / f"{kernel}-{panel_rows}.npz"
            subprocess.run([sys.executable, "-c", RUN_ALL, str(tmp / "in.npz"), str(out)], env=env, check=True)
            with np.load(out) as f:
                assert str(f["kernel"]) == kernel
                outputs[name] = [f[f"c{i}"] for i in range(len(cases))]
    return cases, outputs


def test_this_machine_has_the_simd_kernels_when_its_cpu_does():
    # The list the other tests run: every SIMD kernel this CPU can run, and the reference.
    assert "base" in KERNELS
    if "avx512_vnni" in FLAGS:
        assert KERNELS[-1] == "avx512_vnni"


def test_every_kernel_matches_the_simulation_bit_for_bit(kernel_outputs):
    cases, outputs = kernel_outputs
    for kernel, outs in outputs.items():
        for (x, q, s, b, alpha), c in zip(cases, outs):
            ref = sim.gemm(x, q, s, b, alpha)
            assert c.dtype == np.float32 and c.shape == ref.shape
            np.testing.assert_array_equal(c, ref, err_msg=f"{kernel} m,n,k={x.shape[0]},{q.shape[0]},{x.shape[1]}")


def test_every_kernel_gives_the_same_bits(kernel_outputs):
    cases, outputs = kernel_outputs
    base = outputs["base/auto"]
    for kernel, outs in outputs.items():
        for i, c in enumerate(outs):
            assert c.tobytes() == base[i].tobytes(), (kernel, i)


def test_largest_sums_are_exact():
    # k = 131072 products of +-127 * 127 each: 2 113 994 752 = 127^2 * 2^17, inside int32;
    # the VNNI kernels' biased sums wrap and are brought back exactly.
    k = 131072
    x = np.ones((2, k), np.float32)
    x[1] = -1
    q = np.full((1, k), 127, np.int8)
    out = ops.int8_linear(x, q, np.ones(1, np.float32))
    scale = np.float32(1) / np.float32(127)
    assert out[0, 0] == np.float32(127 * 127 * k) * scale
    assert out[1, 0] == -np.float32(127 * 127 * k) * scale


def test_a_row_alone_equals_the_row_in_a_batch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((45, 200)).astype(np.float32)
    q, s = ops.quantize_rows(rng.standard_normal((77, 200)).astype(np.float32))
    full = ops.int8_linear(x, q, s)
    for i in (0, 17, 44):
        assert ops.int8_linear(x[i:i + 1], q, s).tobytes() == full[i:i + 1].tobytes()


def test_thread_count_does_not_change_the_bits():
    import tformer

    rng = np.random.default_rng(6)
    q, s = ops.quantize_rows(rng.standard_normal((1000, 256)).astype(np.float32))
    before = tformer.get_num_threads()
    try:
        for m in (1, 6, 40, 200):  # both paths (in place, panels) of the kernel this CPU runs
            x = rng.standard_normal((m, 256)).astype(np.float32)
            tformer.set_num_threads(1)
            one = ops.int8_linear(x, q, s)
            tformer.set_num_threads(2)
            two = ops.int8_linear(x, q, s)
            assert one.tobytes() == two.tobytes()
            np.testing.assert_array_equal(one, sim.gemm(x, q, s))
    finally:
        tformer.set_num_threads(before)


def test_leading_dimensions_are_kept():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 65)).astype(np.float32)
    q, s = ops.quantize_rows(rng.standard_normal((9, 65)).astype(np.float32))
    out = ops.int8_linear(x, q, s)
    assert out.shape == (2, 3, 9)
    np.testing.assert_array_equal(out.reshape(6, 9), sim.gemm(x.reshape(6, 65), q, s))


def test_quantize_rows_matches_numpy_and_dequantize_inverts_the_scale():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 131)).astype(np.float32) * np.logspace(-20, 20, 20, dtype=np.float32)[:, None]
    x[3] = 0
    x[7, 5] = 0.5 * np.abs(x[7]).max()  # ties go to even
    q, s = ops.quantize_rows(x)
    rq, rs = sim.quantize(x)
    np.testing.assert_array_equal(q, rq)
    np.testing.assert_array_equal(s, rs)
    assert q.dtype == np.int8 and s.dtype == np.float32
    assert np.abs(q).max() == 127 and q.min() >= -127
    np.testing.assert_array_equal(ops.dequantize_rows(q, s), q.astype(np.float32) * s[:, None])


def _env_run(code, **env):
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True, text=True)


PRINT_KERNEL = "from tformer import ops; print(ops.cpu_int8_kernel())"


def test_default_kernel_is_the_widest_and_cpu_isa_caps_it():
    expected = KERNELS[-1]
    env = {k: v for k, v in os.environ.items() if k not in ("TFORMER_INT8_KERNEL", "TFORMER_CPU_ISA")}
    r = subprocess.run([sys.executable, "-c", PRINT_KERNEL], env=env, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == expected
    if "avx2" in FLAGS:
        assert _env_run(PRINT_KERNEL, TFORMER_CPU_ISA="avx2").stdout.strip() == "avx2"  # no VNNI under the cap
    assert _env_run(PRINT_KERNEL, TFORMER_CPU_ISA="base").stdout.strip() == "base"


def test_unknown_forced_kernel_names_the_accepted_values():
    r = _env_run(PRINT_KERNEL, TFORMER_INT8_KERNEL="avx9000")
    assert r.returncode != 0
    assert "ValueError" in r.stderr and "TFORMER_INT8_KERNEL=avx9000" in r.stderr
    assert "'avx512_vnni', 'avx_vnni', 'avx2', 'base'" in r.stderr


def test_forcing_a_kernel_refuses_one_this_cpu_lacks_and_runs_the_others():
    for kernel in ("avx512_vnni", "avx_vnni", "avx2", "base"):
        r = _env_run(PRINT_KERNEL, TFORMER_INT8_KERNEL=kernel)
        if kernel in KERNELS:
            assert r.returncode == 0 and r.stdout.strip() == kernel, r.stderr
        else:
            assert r.returncode != 0 and "this CPU lacks the instructions" in r.stderr


def test_errors_of_the_bindings():
    q = np.zeros((4, 8), np.int8)
    s = np.ones(4, np.float32)
    x = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match="input must end with 8 features"):
        ops.int8_linear(np.ones((2, 7), np.float32), q, s)
    with pytest.raises(ValueError, match="weight_scale"):
        ops.int8_linear(x, q, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="bias"):
        ops.int8_linear(x, q, s, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="weight must be 2-D"):
        ops.int8_linear(x, np.zeros(8, np.int8), s)
    with pytest.raises(TypeError, match="expected an int8 array"):
        ops.int8_linear(x, q.astype(np.int16), s)
    with pytest.raises(ValueError, match="at most 131072"):
        ops.int8_linear(np.ones((1, 131073), np.float32), np.zeros((1, 131073), np.int8), np.ones(1, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        ops.quantize_rows(np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="2-D"):
        ops.quantize_rows(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="scale"):
        ops.dequantize_rows(q, np.ones(3, np.float32))

#!/usr/bin/env bash
# The whole project on a lent GPU, in one device call (see docs/PERFORMANCE.md, "GPU check"):
# build tformer with the CUDA backend (with the ptxas resource report), run the lab checks
# of the forward and training kernels on it, the test suite (cpu and cuda cases: the op
# tests of tests/ops, training kernels included, run on both), and the forward benchmark
# on the GPU. Logs and figures go to $OUT.
#
#   run: bash bench/gpu/full_check.sh      carry: ["wheelhouse"]   timeout_s: 540
#
# wheelhouse/ holds the wheels the device image lacks (scipy-openblas32), made here with
#   pip download --no-deps --only-binary=:all: -d wheelhouse scipy-openblas32
set -uo pipefail
OUT=${OUT:-build/gpu-out}
mkdir -p "$OUT"
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
arch=${arch:-90}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nvcc --version | tail -1; python3 --version; } \
  | tee "$OUT/machine.txt"

python3 -m pip install -q --no-index --find-links wheelhouse scipy-openblas32 >"$OUT/pip.log" 2>&1 || cat "$OUT/pip.log"
t0=$(date +%s)
TFORMER_CUDA=ON python3 -m pip install --no-build-isolation --no-deps -v . \
  -Ccmake.define.TFORMER_CUDA_ARCHS="$arch" -Ccmake.define.TFORMER_CUDA_VERBOSE_PTXAS=ON \
  >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s for sm_$arch; kernels that spill: $(grep -c '[1-9][0-9]* bytes spill' "$OUT/build.log")"
python3 -c "import tformer, json; print(json.dumps(tformer.build_info()))" | tee "$OUT/build_info.json"

# The lab's checks (host programs, seconds to compile) on the library just installed:
# every forward op, then every training kernel, against float64 / CPU-formula references.
lib=$(python3 -c "import pathlib, tformer; print(pathlib.Path(tformer.__file__).parent / 'libtformer_cuda.so')")
# mma.cuh's fragment layouts on the real tensor cores (the emulator assumes them: emu_mma.h).
nvcc -std=c++17 -arch=sm_$arch -Icuda bench/gpu/check_mma.cu -o "$OUT/check_mma" && "$OUT/check_mma" > "$OUT/check_mma.log" 2>&1
echo "check_mma exit $?: $(tail -1 "$OUT/check_mma.log")"
for check in check_backend check_training check_attention_mma; do
  g++ -O2 -std=c++17 -pthread -Icpp/include "bench/gpu/$check.cpp" -ldl -o "$OUT/$check" &&
    timeout 60 "$OUT/$check" "$lib" > "$OUT/$check.log" 2>&1
  echo "$check exit $?: $(tail -1 "$OUT/$check.log")"
  grep -E "^FAIL" "$OUT/$check.log" | head -20
done

timeout 270 python3 -m pytest -q --maxfail=25 --no-header -p no:cacheprovider tests >"$OUT/pytest.log" 2>&1
echo "pytest exit $?: $(tail -1 "$OUT/pytest.log")"
grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -20

timeout 120 python3 bench/bench_forward.py --device cuda --repeat 10 --json "$OUT/forward_cuda_f32.json" 2>&1 \
  | grep -v Loading | tee "$OUT/forward_cuda_f32.txt"
timeout 120 python3 bench/bench_forward.py --device cuda --dtype float16 --repeat 10 --json "$OUT/forward_cuda_f16.json" 2>&1 \
  | grep -v Loading | tee "$OUT/forward_cuda_f16.txt"

#!/usr/bin/env bash
# The whole project on a lent GPU, in one device call (see docs/PERFORMANCE.md, "GPU check"):
# build tformer with the CUDA backend, run the test suite (cpu and cuda cases), the CUDA
# lab checks, and the forward benchmark on the GPU. Logs and figures go to $OUT.
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
  -Ccmake.define.TFORMER_CUDA_ARCHS="$arch" >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s for sm_$arch"
python3 -c "import tformer, json; print(json.dumps(tformer.build_info()))" | tee "$OUT/build_info.json"

timeout 240 python3 -m pytest -q -x --no-header -p no:cacheprovider tests >"$OUT/pytest.log" 2>&1
echo "pytest exit $?: $(tail -1 "$OUT/pytest.log")"
grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -20

timeout 120 python3 bench/bench_forward.py --device cuda --repeat 10 --json "$OUT/forward_cuda_f32.json" 2>&1 \
  | grep -v Loading | tee "$OUT/forward_cuda_f32.txt"
timeout 120 python3 bench/bench_forward.py --device cuda --dtype float16 --repeat 10 --json "$OUT/forward_cuda_f16.json" 2>&1 \
  | grep -v Loading | tee "$OUT/forward_cuda_f16.txt"

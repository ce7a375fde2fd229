#!/usr/bin/env bash
# The whole project on a lent GPU, in one device call (see docs/PERFORMANCE.md, "GPU check"):
# build tformer with the CUDA backend (with the ptxas resource report), run the lab checks
# of the forward and training kernels on it, issue 6's GPU benchmarks (attention against
# torch SDPA flash, training and decoding against PyTorch/transformers), the cuda cases of
# the test suite, and the forward benchmark on the GPU, inside a time budget.
#
#   run: bash bench/gpu/full_check.sh      carry: ["wheelhouse"]   timeout_s: 600
#
# wheelhouse/ holds the wheels the device image lacks (scipy-openblas32), made here with
#   pip download --no-deps --only-binary=:all: -d wheelhouse scipy-openblas32
#
# BUDGET_S (default 540): the whole script's seconds; each stage gets a timeout that leaves the
# later ones their share, and a stage with under 20 s left is skipped (and says so).
# STAGES (default "build lab bench tests forward"): a rerun can name only what is missing;
# without "build" the tformer installed by an earlier call on the same (warm) machine is used.
# TESTS_ALL=1 runs the whole suite instead of its cuda cases (the cpu cases run in CI).
#
# The device tool brings back at most 8 files from $OUT: everything is written to
# build/gpu-out, and $OUT receives summary.txt (all that this script prints), the benchmarks'
# JSON (attention, train, decode, forward_f16) and logs.tar.gz (build, lab, pytest, bench logs).
set -uo pipefail
DEST=${OUT:-}
OUT=build/gpu-out
rm -rf "$OUT"
mkdir -p "$OUT"
exec > >(tee "$OUT/summary.txt") 2>&1
export PYTHONUNBUFFERED=1
BUDGET_S=${BUDGET_S:-540}
STAGES=${STAGES:-build lab bench tests forward}
T0=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }
want() { [[ " $STAGES " == *" $1 "* ]]; }
# limit CAP RESERVE: seconds for the next step: CAP, or less so that RESERVE stays for later ones
limit() { local l=$(( $(left) - $2 )); (( l > $1 )) && l=$1; (( l < 0 )) && l=0; echo $l; }
publish() {  # copy the results so far to $OUT (also when a later step is killed)
  [[ -n "$DEST" ]] || return 0
  mkdir -p "$DEST"
  cp -f "$OUT"/*.json "$DEST"/ 2>/dev/null
  (cd "$OUT" && tar czf "$DEST/logs.tar.gz" $(ls | grep -E '\.(log|txt|json)$'))
  cp -f "$OUT/summary.txt" "$DEST/summary.txt"
}
trap 'echo "stopped after $(( $(date +%s) - T0 )) s"; publish' EXIT
trap 'exit 143' TERM
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
arch=${arch:-90}
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; nvcc --version | tail -1; python3 --version; } \
  | tee "$OUT/machine.txt"
echo "budget ${BUDGET_S} s, stages: $STAGES"

if want build; then
python3 -m pip install -q --no-index --find-links wheelhouse scipy-openblas32 >"$OUT/pip.log" 2>&1 || cat "$OUT/pip.log"
t0=$(date +%s)
TFORMER_CUDA=ON python3 -m pip install --no-build-isolation --no-deps -v . \
  -Ccmake.define.TFORMER_CUDA_ARCHS="$arch" -Ccmake.define.TFORMER_CUDA_VERBOSE_PTXAS=ON \
  >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s for sm_$arch; kernels that spill: $(grep -c '[1-9][0-9]* bytes spill' "$OUT/build.log")"
fi
python3 -c "import tformer, json; print(json.dumps(tformer.build_info()))" | tee "$OUT/build_info.json"
publish

# The lab's checks (host programs, seconds to compile) on the library just installed:
# every forward op, then every training kernel, the tensor-core and the decode-step
# attention, against float64 / CPU-formula references.
if want lab; then
lib=$(python3 -c "import pathlib, tformer; print(pathlib.Path(tformer.__file__).parent / 'libtformer_cuda.so')")
# mma.cuh's fragment layouts on the real tensor cores (the emulator assumes them: emu_mma.h).
nvcc -std=c++17 -arch=sm_$arch -Icuda bench/gpu/check_mma.cu -o "$OUT/check_mma" && "$OUT/check_mma" > "$OUT/check_mma.log" 2>&1
echo "check_mma exit $?: $(tail -1 "$OUT/check_mma.log")"
for check in check_backend check_training check_t5_kernels check_attention_mma check_decode_attention; do
  g++ -O2 -std=c++17 -pthread -Icpp/include "bench/gpu/$check.cpp" -ldl -o "$OUT/$check" &&
    timeout 60 "$OUT/$check" "$lib" > "$OUT/$check.log" 2>&1
  echo "$check exit $?: $(tail -1 "$OUT/$check.log")"
  grep -E "^FAIL" "$OUT/$check.log" | head -20
done
fi
publish

# Issue 6's benchmarks, each with a timeout and an inner budget (it starts no new case after
# it, and lists the cases left out): shapes reduced from the scripts' defaults to fit.
bench() {  # name cap command...: runs command --json $OUT/name.json --budget-s, prints its table
  local name=$1 cap=$2 t
  shift 2
  t=$(limit "$cap" "$after_bench")
  if (( t < 20 )); then echo "$name: skipped, $(left) s left"; return; fi
  echo "== $name (timeout $t s)"
  timeout -k 5 "$t" "$@" --json "$OUT/$name.json" --budget-s $(( t - 25 )) > "$OUT/$name.txt" 2>&1
  local rc=$?
  grep -v -E "Loading|Writing model|it/s\]" "$OUT/$name.txt" | tail -60
  echo "$name exit $rc"
  publish
}
after_bench=0  # seconds kept for the stages that follow, when they are to run
want tests && after_bench=$(( after_bench + 110 ))
want forward && after_bench=$(( after_bench + 40 ))
if want bench; then
  bench attention 95 python3 bench/gpu/bench_attention.py --dtypes bfloat16,float16 --seqs 128,512,1024,2048,4096 --repeats 3
  bench train 85 python3 bench/gpu/bench_train_gpu.py --repeats 3
  bench decode 75 python3 bench/gpu/bench_decode_gpu.py --dtypes float16,float32 --repeats 3
fi

if want tests; then
  t=$(limit 200 "$(want forward && echo 40 || echo 0)")
  select=(-k cuda)
  [[ "${TESTS_ALL:-0}" == 1 ]] && select=()
  if (( t >= 20 )); then
    timeout -k 5 "$t" python3 -m pytest -q --maxfail=25 --no-header -p no:cacheprovider "${select[@]}" tests \
      >"$OUT/pytest.log" 2>&1
    echo "pytest (timeout $t s, ${select[*]:-all}) exit $?: $(tail -1 "$OUT/pytest.log")"
    grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -20
  else
    echo "pytest: skipped, $(left) s left"
  fi
  publish
fi

if want forward; then
  t=$(limit 60 0)
  if (( t >= 20 )); then
    timeout -k 5 "$t" python3 bench/bench_forward.py --device cuda --dtype float16 --repeat 10 \
      --json "$OUT/forward_f16.json" 2>&1 | grep -v Loading | tee "$OUT/forward_f16.txt"
  else
    echo "forward: skipped, $(left) s left"
  fi
fi
echo "total $(( $(date +%s) - T0 )) s of ${BUDGET_S}"

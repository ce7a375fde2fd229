#!/usr/bin/env bash
# Build the CUDA backend for this machine's GPU, check every op (forward:
# check_backend, training: check_training, tensor-core and decode-step attention:
# check_attention_mma, check_decode_attention), then time the hot ones. Run from the
# repository root: bash bench/gpu/run.sh [arch, e.g. 90]
# Logs go to $OUT (the device tool's folder) when set, else to build/gpu-lab/.
set -euo pipefail
arch=${1:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}
build=build/gpu-lab
logs=${OUT:-$build}
mkdir -p "$logs"
python=$(command -v python3)
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader
cmake -S bench/gpu -B "$build" -G Ninja -DPython_EXECUTABLE="$python" \
  -DTFORMER_CUDA_ARCHS="$arch" -DTFORMER_CUDA_VERBOSE_PTXAS=ON > "$logs/configure.log"
start=$(date +%s)
cmake --build "$build" -j"$(nproc)" > "$logs/build.log" 2>&1 || { tail -40 "$logs/build.log"; exit 1; }
echo "build: $(( $(date +%s) - start )) s; spills: $(grep -c '[1-9][0-9]* bytes spill' "$logs/build.log" || true) kernels"
lib="$build/libtformer_cuda.so"
echo "training kernels: $(grep -A4 'Compiling entry function .*\(backward\|dkdv\|dq_kernel\|delta\|cross_entropy\|dropout\|adamw\|column_\|sum_squares\|sum_partials\)' "$logs/build.log" | grep -c '[1-9][0-9]* bytes spill') spilling"
for check in check_backend check_training check_t5_kernels check_attention_mma check_decode_attention; do
  "$build/$check" "$lib" | tee "$logs/$check.log" | grep -v '^ok ' || true
  tail -1 "$logs/$check.log"
done
if command -v compute-sanitizer > /dev/null && [ "${SANITIZE:-1}" = 1 ]; then
  # The checks provoke API errors on purpose (out of memory, bad device): not reported.
  for check in check_backend check_training check_t5_kernels check_attention_mma check_decode_attention; do
    for tool in memcheck racecheck; do
      compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 9 \
        "$build/$check" "$lib" > "$logs/$check.$tool.log" 2>&1 || true
      echo "$check $tool: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/$check.$tool.log" || tail -1 "$logs/$check.$tool.log")"
    done
  done
fi
"$build/time_backend" "$lib" | tee "$logs/time.log"

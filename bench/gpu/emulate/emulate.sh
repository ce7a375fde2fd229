#!/usr/bin/env bash
# Builds and runs check_emu_cp_async (the emulator's own cp.async model), then
# check_training (the CUDA backend's training kernels) and check_attention_mma (the
# tensor-core attention forward) on the CPU emulator (emu.h), then check_mma, then
# check_decode_attention (the decode-step attention): no GPU needed, only the CUDA
# headers (cuda_fp16.h and friends) and g++. Run from the repository root:
# bash bench/gpu/emulate/emulate.sh [--all-dtypes]
set -euo pipefail
out=${OUT:-build/emulate}
cuda_include=${CUDA_INCLUDE:-}
for dir in "${CUDA_HOME:-/nonexistent}/include" /usr/local/cuda/include "$(dirname "$(command -v nvcc)")/../include"; do
  [ -z "$cuda_include" ] && [ -f "$dir/cuda_fp16.h" ] && cuda_include=$dir
done
[ -n "$cuda_include" ] || { echo "no CUDA headers found: set CUDA_INCLUDE" >&2; exit 1; }
rm -rf "$out/src"  # stale sources of an earlier run (check_mma.cpp lived here once) would be linked in
mkdir -p "$out"
# The emulator's own cp.async model first (the checks below rely on it to catch ordering bugs).
g++ -std=c++17 -O2 -Wno-attributes -Ibench/gpu/emulate -I"$cuda_include" bench/gpu/emulate/check_emu_cp_async.cpp \
  -o "$out/check_emu_cp_async"
"$out/check_emu_cp_async" | awk '!/^ok/'  # the failures and the summary
python3 bench/gpu/emulate/emulate.py "$out/src" cuda/layer_norm.cu cuda/attention.cu cuda/attention_decode.cu \
  cuda/attention_mma.cu cuda/train_attention.cu cuda/train_attention_mma.cu cuda/train_reduce.cu cuda/train_loss.cu \
  cuda/train_elementwise.cu cuda/train_embedding.cu
flags=(-std=c++17 -O2 -g -Wno-attributes -Icpp/include -Icuda -Ibench/gpu/emulate -I"$cuda_include")
objs=()
for src in "$out"/src/*.cpp bench/gpu/emulate/emu_backend.cpp; do
  obj="$out/$(basename "${src%.cpp}").o"
  g++ "${flags[@]}" -c "$src" -o "$obj" &
  objs+=("$obj")
done
wait
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED bench/gpu/check_training.cpp "${objs[@]}" -ldl -o "$out/check_training_emulated"
"$out/check_training_emulated" "$@"
# The tensor-core attention forward (f16 / bf16) through the same backend.
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED bench/gpu/check_attention_mma.cpp "${objs[@]}" -ldl -o "$out/check_attention_mma_emulated"
"$out/check_attention_mma_emulated"
# The tensor-core primitives (cuda/mma.cuh as emu_mma.h models them), composed as the kernels do.
# (its own directory: everything in src/ is linked into the checks above)
python3 bench/gpu/emulate/emulate.py "$out/lab_src" bench/gpu/check_mma.cu
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED "$out/lab_src/check_mma.cpp" -o "$out/check_mma_emulated"
"$out/check_mma_emulated"
# The decode-step attention (q_len 1), split along the keys or in one pass (EMU_SM_COUNT
# per case); every head size in the half types too with --all-dtypes.
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED bench/gpu/check_decode_attention.cpp "${objs[@]}" -ldl \
  -o "$out/check_decode_attention_emulated"
"$out/check_decode_attention_emulated" ${1:+--all}

#!/usr/bin/env bash
# Builds and runs check_training (the CUDA backend's training kernels) and
# check_attention_mma (the tensor-core attention forward) on the CPU emulator (emu.h),
# then check_mma: no GPU needed, only the CUDA headers (cuda_fp16.h and friends) and
# g++. The objects are build_library.sh's (every kernel file of cuda/, emulated).
# Run from the repository root: bash bench/gpu/emulate/emulate.sh
set -euo pipefail
out=${OUT:-build/emulate}
OUT=$out bash bench/gpu/emulate/build_library.sh >/dev/null
cuda_include=$(bash bench/gpu/emulate/cuda_include.sh)
flags=(-std=c++17 -O2 -g -Wno-attributes -Icpp/include -Icuda -Ibench/gpu/emulate -I"$cuda_include")
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED bench/gpu/check_training.cpp "$out"/*.o -ldl -o "$out/check_training_emulated"
"$out/check_training_emulated" "$@"
# The tensor-core attention forward (f16 / bf16) through the same backend.
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED bench/gpu/check_attention_mma.cpp "$out"/*.o -ldl -o "$out/check_attention_mma_emulated"
"$out/check_attention_mma_emulated"
# The tensor-core primitives (cuda/mma.cuh as emu_mma.h models them), composed as the kernels do.
# (its own directory: everything in src/ is linked into the checks above)
python3 bench/gpu/emulate/emulate.py "$out/lab_src" bench/gpu/check_mma.cu
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED "$out/lab_src/check_mma.cpp" -o "$out/check_mma_emulated"
"$out/check_mma_emulated"

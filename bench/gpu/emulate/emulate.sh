#!/usr/bin/env bash
# Runs check_emu_cp_async (the emulator's own cp.async model), builds the emulated library
# (build_library.sh: every kernel file of cuda/ on the CPU emulator of emu.h) and runs the
# GPU lab's checks against it: check_backend (every forward op, loaded with dlopen as the
# core does), check_training (the training kernels), check_t5_kernels (T5's kernels),
# check_attention_mma (the tensor-core attention forward), check_mma (the tensor-core
# primitives), then check_decode_attention
# (the decode-step attention). No GPU needed, only g++ and the CUDA headers (cuda_fp16.h
# and friends). Run from the repository root: bash bench/gpu/emulate/emulate.sh [--all-dtypes]
# (--all-dtypes: check_training and check_decode_attention in f16 and bf16 too;
# check_backend always runs all three).
set -euo pipefail
out=${OUT:-build/emulate}
cuda_include=$(bash bench/gpu/emulate/cuda_include.sh)
mkdir -p "$out"
# The emulator's own cp.async model first (the checks below rely on it to catch ordering bugs).
g++ -std=c++17 -O2 -Wno-attributes -Ibench/gpu/emulate -I"$cuda_include" bench/gpu/emulate/check_emu_cp_async.cpp \
  -o "$out/check_emu_cp_async"
"$out/check_emu_cp_async" | awk '!/^ok/'  # the failures and the summary
lib=$(OUT=$out bash bench/gpu/emulate/build_library.sh)
mapfile -t objs <"$out/objects"
flags=(-std=c++17 -O2 -g -Wno-attributes -Icpp/include -Icuda -Ibench/gpu/emulate -I"$cuda_include")
g++ "${flags[@]}" bench/gpu/check_backend.cpp -ldl -o "$out/check_backend"
echo "== check_backend on the emulator"
"$out/check_backend" "$lib" | awk '!/^ok/'  # the failures and the summary
echo "== check_training on the emulator"
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED bench/gpu/check_training.cpp "${objs[@]}" -ldl -o "$out/check_training_emulated"
"$out/check_training_emulated" "$@"
# The kernels T5 adds (RMSNorm, gated_act, relative position bias), forward and backward, every dtype.
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED bench/gpu/check_t5_kernels.cpp "${objs[@]}" -ldl -o "$out/check_t5_kernels_emulated"
"$out/check_t5_kernels_emulated" | awk '!/^ok/'  # the failures, the paths taken and the summary
# The tensor-core attention forward (f16 / bf16) through the same backend.
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED bench/gpu/check_attention_mma.cpp "${objs[@]}" -ldl -o "$out/check_attention_mma_emulated"
"$out/check_attention_mma_emulated"
# The tensor-core primitives (cuda/mma.cuh as emu_mma.h models them), composed as the kernels do.
# (its own directory, apart from the library's sources)
python3 bench/gpu/emulate/emulate.py "$out/lab_src" bench/gpu/check_mma.cu
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED "$out/lab_src/check_mma.cpp" -o "$out/check_mma_emulated"
"$out/check_mma_emulated"
# The decode-step attention (q_len 1), split along the keys or in one pass (EMU_SM_COUNT
# per case); every head size in the half types too with --all-dtypes.
g++ "${flags[@]}" -DTFORMER_LAB_EMULATED bench/gpu/check_decode_attention.cpp "${objs[@]}" -ldl \
  -o "$out/check_decode_attention_emulated"
"$out/check_decode_attention_emulated" ${1:+--all}

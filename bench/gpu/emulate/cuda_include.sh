#!/usr/bin/env bash
# Prints the directory of the CUDA toolkit's headers (cuda_fp16.h and friends) that the
# emulated builds compile against: CUDA_INCLUDE, else $CUDA_HOME, /usr/local/cuda or nvcc's.
set -euo pipefail
for dir in "${CUDA_INCLUDE:-/nonexistent}" "${CUDA_HOME:-/nonexistent}/include" /usr/local/cuda/include \
  "$(dirname "$(command -v nvcc || echo /nonexistent/nvcc)")/../include"; do
  if [ -f "$dir/cuda_fp16.h" ]; then echo "$dir"; exit 0; fi
done
echo "no CUDA headers found (cuda_fp16.h): set CUDA_INCLUDE" >&2
exit 1

#!/usr/bin/env bash
# Builds libtformer_cuda_emulated.so: every kernel file of cuda/ (emulate.py's rewrite,
# so each launch runs on the CPU emulator of emu.h) with gemm.cu's launcher over a host
# cuBLAS stand-in (emu_gemm.cpp), behind the tformer::Backend of emu_backend.cpp, which
# exports libtformer_cuda.so's factory symbol. The core loads it instead of the packaged
# library with TFORMER_CUDA_LIBRARY=<path>/libtformer_cuda_emulated.so, so the test
# suite's "cuda" cases run the real kernel code on a machine without a GPU
# (tests/emulated_cuda.txt, docs/PACKAGING.md). Needs g++ and the CUDA toolkit's headers
# (cuda_fp16.h and friends), no driver, no cuBLAS. Objects are rebuilt only when their
# sources changed. Run from the repository root; OUT (default build/emulate) gets the
# library; prints its path.
set -euo pipefail
out=${OUT:-build/emulate}
cuda_include=$(bash bench/gpu/emulate/cuda_include.sh)

# Every .cu of cuda/ but the runtime side (allocator, stream, error strings, the real factory),
# which emu_backend.cpp and emu_runtime.h replace.
runtime="allocator cuda_backend cuda_check device_state factory"
kernels=()
for src in cuda/*.cu; do
  stem=$(basename "$src" .cu)
  [[ " $runtime " == *" $stem "* ]] || kernels+=("$src")
done
mkdir -p "$out/src"
# (the .cuh headers too: those whose templates launch kernels are rewritten next to the .cpp files)
python3 bench/gpu/emulate/emulate.py "$out/src.new" "${kernels[@]}" cuda/*.cuh
for f in "$out"/src.new/*; do  # keep the old file (and its timestamp) when unchanged
  cmp -s "$f" "$out/src/$(basename "$f")" || mv "$f" "$out/src/$(basename "$f")"
done
rm -rf "$out/src.new"

flags=(-std=c++17 -O2 -fPIC -fvisibility=hidden -Wno-attributes -Icpp/include -Icuda -Ibench/gpu/emulate
       -I"$cuda_include")
headers=(bench/gpu/emulate/*.h cuda/*.h cuda/*.cuh cpp/include/tformer/*.h)
objs=()
pids=()
for stem in "${kernels[@]}" bench/gpu/emulate/emu_backend.cpp bench/gpu/emulate/emu_gemm.cpp; do
  case $stem in
    cuda/*) src="$out/src/$(basename "$stem" .cu).cpp" ;;
    *) src=$stem ;;
  esac
  obj="$out/$(basename "${src%.cpp}").o"
  objs+=("$obj")
  stale=0
  [ -f "$obj" ] || stale=1
  for dep in "$src" "${headers[@]}"; do [ "$stale" = 1 ] || [ ! "$dep" -nt "$obj" ] || stale=1; done
  if [ "$stale" = 1 ]; then
    g++ "${flags[@]}" -c "$src" -o "$obj" &
    pids+=($!)
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
g++ -shared -Wl,--version-script=cuda/exports.map -Wl,-z,defs "${objs[@]}" -o "$out/libtformer_cuda_emulated.so"
printf "%s\n" "${objs[@]}" >"$out/objects"  # for emulate.sh: these, not every *.o lying in $out
echo "$out/libtformer_cuda_emulated.so"

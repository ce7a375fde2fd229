# Toolchain file of the manylinux_2_28 wheels (scripts/build_wheels.sh; docs/PACKAGING.md):
# the same compilers and flags as a source build (gcc, nvcc), but linked against the "link
# root" of scripts/make_link_root.py, named by the environment variable TFORMER_LINK_ROOT,
# instead of this machine's libraries:
#   glibc 2.28's interface (zig's stubs), so no symbol newer than GLIBC_2.28 is referenced;
#   a libstdc++.so.6 stub holding only the versions the policy allows (GLIBCXX <= 3.4.24,
#   CXXABI <= 1.3.11), then gcc's libstdc++.a for the few newer symbols the code uses, linked
#   in and kept local (--exclude-libs), as RHEL's gcc-toolset does with libstdc++_nonshared.a;
#   libgomp built on an old glibc (scikit-learn's), vendored by auditwheel as before.
set(TFORMER_LINK_ROOT "$ENV{TFORMER_LINK_ROOT}")
if(NOT EXISTS "${TFORMER_LINK_ROOT}/libc.so.6" OR NOT EXISTS "${TFORMER_LINK_ROOT}/libstdc++.so.6")
  message(FATAL_ERROR "cmake/glibc-2.28.cmake: TFORMER_LINK_ROOT='${TFORMER_LINK_ROOT}' is not a link root; "
                      "make one with scripts/make_link_root.py (scripts/build_wheels.sh does)")
endif()

# -L first: -lc, -lm, -ldl, -lpthread, -lgomp and g++'s own -lstdc++ find the stubs.
foreach(_kind SHARED MODULE EXE)
  string(APPEND CMAKE_${_kind}_LINKER_FLAGS_INIT
         " -L${TFORMER_LINK_ROOT} -Wl,-rpath-link,${TFORMER_LINK_ROOT} -Wl,--exclude-libs,libstdc++_static.a")
endforeach()
# (Not for MODULE: a Python extension leaves the interpreter's symbols undefined.)
string(APPEND CMAKE_SHARED_LINKER_FLAGS_INIT " -Wl,--no-undefined")
# The stub before the archive, so that only what the stub lacks is taken from the archive.
set(_tformer_std_libs "${TFORMER_LINK_ROOT}/libstdc++.so.6 ${TFORMER_LINK_ROOT}/libstdc++_static.a ${TFORMER_LINK_ROOT}/glibc_compat.o")
set(CMAKE_CXX_STANDARD_LIBRARIES "${_tformer_std_libs}" CACHE STRING "" FORCE)
set(CMAKE_CUDA_STANDARD_LIBRARIES "${_tformer_std_libs}" CACHE STRING "" FORCE)
# OpenMP: the link root's libgomp, not the compiler's.
set(OpenMP_CXX_FLAGS "-fopenmp" CACHE STRING "")
set(OpenMP_CXX_LIB_NAMES "gomp;pthread" CACHE STRING "")
set(OpenMP_gomp_LIBRARY "${TFORMER_LINK_ROOT}/libgomp.so.1" CACHE FILEPATH "")
set(OpenMP_pthread_LIBRARY "${TFORMER_LINK_ROOT}/libpthread.so.0" CACHE FILEPATH "")

# The CUDA backend: libtformer_cuda.so, dlopened by the core the first time a CUDA
# device is asked for (see cpp/include/tformer/backend.h). Included from the
# top-level CMakeLists.txt unless TFORMER_CUDA=OFF; sets TFORMER_WITH_CUDA=ON when
# the library is built.
#
# TFORMER_CUDA=AUTO builds it when nvcc and cuBLAS are found, else says why and skips;
# TFORMER_CUDA=ON stops with an error naming what is missing.
#
# cuBLAS is looked up first in the `nvidia-cublas` wheel of ${Python_EXECUTABLE}
# (nvidia/cu13 or nvidia/cublas), then in the CUDA toolkit. cudart is linked
# statically, so users need only the NVIDIA driver and the cuBLAS wheel.

include(CheckLanguage)
# The repository root, from this file's place (bench/gpu's lab project includes it too).
get_filename_component(_tformer_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)

set(TFORMER_CUDA_ARCHS "80;86;89;90" CACHE STRING
  "CUDA architectures of libtformer_cuda (machine code for each; PTX for the last too)")
# The environment variable wins (pip install builds configure without a -D of their own):
# TFORMER_CUDA_ARCHS="90a" pip install . builds Hopper-only code (wgmma) for an H100 alone.
if(NOT "$ENV{TFORMER_CUDA_ARCHS}" STREQUAL "")
  string(REPLACE "," ";" _tformer_env_archs "$ENV{TFORMER_CUDA_ARCHS}")
  set(TFORMER_CUDA_ARCHS "${_tformer_env_archs}" CACHE STRING "CUDA architectures (from the environment)" FORCE)
endif()
foreach(_arch IN LISTS TFORMER_CUDA_ARCHS)
  string(REGEX MATCH "^[0-9]+" _tformer_cc "${_arch}")
  if(NOT _arch MATCHES "^[0-9][0-9]+[af]?$" OR _tformer_cc LESS 80)
    message(FATAL_ERROR "tformer: TFORMER_CUDA_ARCHS entry '${_arch}' is not a supported CUDA architecture: "
                        "use compute capabilities 80 or newer, like 80;86;89;90 or 90a (Hopper-only code)")
  endif()
endforeach()
option(TFORMER_CUDA_PORTABLE_RPATH "Give libtformer_cuda.so only the relative install RPATH in the build tree too (cmake/cuda_standalone: it is packaged as built)" OFF)
option(TFORMER_CUDA_VERBOSE_PTXAS "Print the ptxas resource report (-Xptxas=-v)" OFF)
set(TFORMER_CUDA_COMPRESS "size" CACHE STRING
  "Fatbin compression, nvcc --compress-mode: size, speed, balance, default or none")
set_property(CACHE TFORMER_CUDA_COMPRESS PROPERTY STRINGS size speed balance default none)
include("${CMAKE_CURRENT_LIST_DIR}/cuda_sources_hash.cmake")

macro(_tformer_cuda_skip what how)
  if(TFORMER_CUDA STREQUAL "ON")
    message(FATAL_ERROR "tformer: TFORMER_CUDA=ON but ${what}. ${how}")
  endif()
  message(STATUS "tformer: CUDA backend not built: ${what}. ${how} "
                 "(or configure with -DTFORMER_CUDA=OFF to silence this)")
endmacro()

# ---------------------------------------------------------------- nvcc
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  _tformer_cuda_skip("no CUDA compiler (nvcc) was found"
    "Install the CUDA toolkit (12.x or 13.x), put nvcc on PATH or set CUDACXX=/usr/local/cuda/bin/nvcc.")
  return()
endif()

# Machine code for each listed arch; PTX only for the last, so newer GPUs can JIT it.
set(_tformer_archs "")
list(LENGTH TFORMER_CUDA_ARCHS _tformer_n_archs)
set(_tformer_i 0)
foreach(_arch IN LISTS TFORMER_CUDA_ARCHS)
  math(EXPR _tformer_i "${_tformer_i} + 1")
  if(_arch MATCHES "^[0-9]+[a-z]?$" AND _tformer_i LESS _tformer_n_archs)
    list(APPEND _tformer_archs "${_arch}-real")
  else()
    list(APPEND _tformer_archs "${_arch}")
  endif()
endforeach()
set(CMAKE_CUDA_ARCHITECTURES "${_tformer_archs}")
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
string(REGEX MATCH "^[0-9]+" _tformer_cuda_major "${CMAKE_CUDA_COMPILER_VERSION}")

# ---------------------------------------------------------------- cuBLAS
# Candidate roots: each entry of the `nvidia` namespace package, then purelib/nvidia;
# in each, the wheel layouts nvidia/cu13 (nvidia-cublas 13) and nvidia/cublas
# (nvidia-cublas-cu12). cuBLAS must match nvcc's major version.
set(_tformer_cublas_roots "")
if(Python_EXECUTABLE)
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c
      "import sysconfig, os\ntry:\n    import nvidia; roots = list(nvidia.__path__)\nexcept ImportError:\n    roots = []\nroots.append(os.path.join(sysconfig.get_paths()['purelib'], 'nvidia'))\nprint(';'.join(roots))"
    OUTPUT_VARIABLE _tformer_nvidia_roots RESULT_VARIABLE _tformer_rc
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_tformer_rc EQUAL 0)
    foreach(_root IN LISTS _tformer_nvidia_roots)
      list(APPEND _tformer_cublas_roots "${_root}/cu${_tformer_cuda_major}" "${_root}/cublas")
    endforeach()
    list(REMOVE_DUPLICATES _tformer_cublas_roots)
  endif()
endif()
if(_tformer_cuda_major EQUAL 12)
  set(_tformer_cublas_wheel "nvidia-cublas-cu12")
else()
  set(_tformer_cublas_wheel "nvidia-cublas")
endif()

set(TFORMER_CUBLAS_INCLUDE "")
set(TFORMER_CUBLAS_LIB "")
set(TFORMER_CUBLASLT_LIB "")
set(_v "${_tformer_cuda_major}")
foreach(_root IN LISTS _tformer_cublas_roots)
  if(EXISTS "${_root}/include/cublas_v2.h" AND EXISTS "${_root}/include/cublasLt.h"
     AND EXISTS "${_root}/lib/libcublas.so.${_v}" AND EXISTS "${_root}/lib/libcublasLt.so.${_v}")
    set(TFORMER_CUBLAS_INCLUDE "${_root}/include")
    set(TFORMER_CUBLAS_LIB "${_root}/lib/libcublas.so.${_v}")
    set(TFORMER_CUBLASLT_LIB "${_root}/lib/libcublasLt.so.${_v}")
    break()
  endif()
endforeach()

if(NOT TFORMER_CUBLAS_LIB)
  # The toolkit's own cuBLAS, if it ships one.
  find_path(_tformer_tk_cublas_inc cublas_v2.h HINTS ${CUDAToolkit_INCLUDE_DIRS} NO_CACHE)
  find_library(_tformer_tk_cublas NAMES cublas HINTS ${CUDAToolkit_LIBRARY_DIR} NO_CACHE)
  find_library(_tformer_tk_cublaslt NAMES cublasLt HINTS ${CUDAToolkit_LIBRARY_DIR} NO_CACHE)
  if(_tformer_tk_cublas_inc AND _tformer_tk_cublas AND _tformer_tk_cublaslt)
    set(TFORMER_CUBLAS_INCLUDE "${_tformer_tk_cublas_inc}")
    set(TFORMER_CUBLAS_LIB "${_tformer_tk_cublas}")
    set(TFORMER_CUBLASLT_LIB "${_tformer_tk_cublaslt}")
  endif()
endif()

if(NOT TFORMER_CUBLAS_LIB)
  _tformer_cuda_skip("cuBLAS ${_tformer_cuda_major} was not found (looked in the ${_tformer_cublas_wheel} wheel of ${Python_EXECUTABLE} and in ${CUDAToolkit_LIBRARY_DIR})"
    "Install it with: ${Python_EXECUTABLE} -m pip install ${_tformer_cublas_wheel}")
  return()
endif()
get_filename_component(TFORMER_CUBLAS_LIBDIR "${TFORMER_CUBLAS_LIB}" DIRECTORY)
# cuBLAS's own version (e.g. 13.1.0), for build_info() and the messages of the core.
file(STRINGS "${TFORMER_CUBLAS_INCLUDE}/cublas_api.h" _tformer_cublas_ver REGEX "^#define CUBLAS_VER_(MAJOR|MINOR|PATCH) ")
string(REGEX REPLACE ".*MAJOR ([0-9]+).*MINOR ([0-9]+).*PATCH ([0-9]+).*" "\\1.\\2.\\3" TFORMER_CUBLAS_VERSION "${_tformer_cublas_ver}")
set(TFORMER_CUDA_MAJOR "${_tformer_cuda_major}")
message(STATUS "tformer: CUDA ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES}, cuBLAS ${TFORMER_CUBLAS_LIB}")

# ---------------------------------------------------------------- the library
file(GLOB TFORMER_CUDA_SOURCES CONFIGURE_DEPENDS
  "${_tformer_root}/cuda/*.cu" "${_tformer_root}/cuda/*.cpp")
add_library(tformer_cuda SHARED ${TFORMER_CUDA_SOURCES})
target_include_directories(tformer_cuda PRIVATE
  "${_tformer_root}/cpp/include" "${_tformer_root}/cuda" "${TFORMER_CUBLAS_INCLUDE}")
target_compile_features(tformer_cuda PRIVATE cxx_std_17 cuda_std_17)
target_compile_options(tformer_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo --expt-relaxed-constexpr -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
if(NOT TFORMER_CUDA_COMPRESS STREQUAL "default")
  target_compile_options(tformer_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--compress-mode=${TFORMER_CUDA_COMPRESS}>)
endif()
if(TFORMER_CUDA_VERBOSE_PTXAS)
  target_compile_options(tformer_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xptxas=-v>)
endif()
# Export exactly tformer_cuda_backend_create: the static cudart would otherwise
# export every cuda* symbol. std exceptions still cross the dlopen boundary,
# since their type info lives in the shared libstdc++.
target_link_options(tformer_cuda PRIVATE
  "LINKER:--version-script=${_tformer_root}/cuda/exports.map" "LINKER:--no-undefined")
target_link_libraries(tformer_cuda PRIVATE
  CUDA::cudart_static "${TFORMER_CUBLAS_LIB}" "${TFORMER_CUBLASLT_LIB}" ${CMAKE_DL_LIBS})
set_target_properties(tformer_cuda PROPERTIES
  CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
  CUDA_RUNTIME_LIBRARY Static
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  CXX_VISIBILITY_PRESET hidden
  CUDA_VISIBILITY_PRESET hidden
  VISIBILITY_INLINES_HIDDEN ON
  LINK_DEPENDS "${_tformer_root}/cuda/exports.map"
  # Installed: the nvidia-cublas wheel beside the package (the core also loads cuBLAS
  # itself before this library, see cpp/tensor/backends.cpp); in the build tree, also
  # the cuBLAS found here, unless the library is to be packaged as built.
  INSTALL_RPATH "$ORIGIN/../nvidia/cu${_tformer_cuda_major}/lib;$ORIGIN/../nvidia/cublas/lib"
  BUILD_RPATH "${TFORMER_CUBLAS_LIBDIR}"
  BUILD_WITH_INSTALL_RPATH ${TFORMER_CUDA_PORTABLE_RPATH})
install(TARGETS tformer_cuda LIBRARY DESTINATION tformer)

# What the library was built with, next to it: build_info() reads it without loading
# CUDA, and a wheel build given TFORMER_CUDA_PREBUILT (cmake/cuda_prebuilt.cmake)
# checks the sources against it.
tformer_cuda_sources_hash(_tformer_sources_sha256)
set(TFORMER_CUDA_BUILD_JSON "${CMAKE_CURRENT_BINARY_DIR}/tformer_cuda_build.json")
file(WRITE "${TFORMER_CUDA_BUILD_JSON}" "{
  \"cuda_version\": \"${CMAKE_CUDA_COMPILER_VERSION}\",
  \"cuda_major\": ${TFORMER_CUDA_MAJOR},
  \"cublas_version\": \"${TFORMER_CUBLAS_VERSION}\",
  \"archs\": \"${CMAKE_CUDA_ARCHITECTURES}\",
  \"fatbin_compression\": \"${TFORMER_CUDA_COMPRESS}\",
  \"sources_sha256\": \"${_tformer_sources_sha256}\"
}
")

set(TFORMER_WITH_CUDA ON)

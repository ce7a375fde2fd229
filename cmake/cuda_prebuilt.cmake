# Packages a libtformer_cuda.so built earlier instead of compiling CUDA again: the
# library does not depend on Python, so scripts/build_wheels.sh builds it once
# (cmake/cuda_standalone) and every Python version's wheel takes it from
# TFORMER_CUDA_PREBUILT, a directory with libtformer_cuda.so and tformer_cuda_build.json.
# Sets the same variables as cmake/cuda_backend.cmake.

include("${CMAKE_CURRENT_LIST_DIR}/cuda_sources_hash.cmake")
set(TFORMER_CUDA_BUILD_JSON "${TFORMER_CUDA_PREBUILT}/tformer_cuda_build.json")
set(_tformer_prebuilt_lib "${TFORMER_CUDA_PREBUILT}/libtformer_cuda.so")
if(NOT EXISTS "${_tformer_prebuilt_lib}" OR NOT EXISTS "${TFORMER_CUDA_BUILD_JSON}")
  message(FATAL_ERROR "tformer: TFORMER_CUDA_PREBUILT=${TFORMER_CUDA_PREBUILT} must hold libtformer_cuda.so "
                      "and tformer_cuda_build.json (see scripts/build_wheels.sh)")
endif()
file(READ "${TFORMER_CUDA_BUILD_JSON}" _tformer_json)
string(JSON TFORMER_CUDA_MAJOR GET "${_tformer_json}" cuda_major)
string(JSON TFORMER_CUBLAS_VERSION GET "${_tformer_json}" cublas_version)
string(JSON _tformer_built_sha GET "${_tformer_json}" sources_sha256)
tformer_cuda_sources_hash(_tformer_sha)
if(NOT _tformer_sha STREQUAL _tformer_built_sha)
  message(FATAL_ERROR "tformer: ${_tformer_prebuilt_lib} was built from other sources than these "
                      "(cuda/, cpp/include/ or cmake/cuda_backend.cmake changed since); build it again")
endif()
message(STATUS "tformer: CUDA backend taken prebuilt from ${TFORMER_CUDA_PREBUILT} (CUDA major ${TFORMER_CUDA_MAJOR}, cuBLAS ${TFORMER_CUBLAS_VERSION})")
install(PROGRAMS "${_tformer_prebuilt_lib}" DESTINATION tformer)
set(TFORMER_WITH_CUDA ON)

# tformer_cuda_sources_hash(<var>): one SHA-256 over everything libtformer_cuda.so is
# compiled from (cuda/, the core's public headers, the CUDA build rules), so that a
# libtformer_cuda.so built earlier is only ever packaged with the sources it came from.
function(tformer_cuda_sources_hash out_var)
  get_filename_component(_root "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/.." ABSOLUTE)
  file(GLOB_RECURSE _files RELATIVE "${_root}"
    "${_root}/cuda/*" "${_root}/cpp/include/*" "${_root}/cmake/cuda_backend.cmake")
  list(SORT _files)
  set(_all "")
  foreach(_f IN LISTS _files)
    file(SHA256 "${_root}/${_f}" _h)
    string(APPEND _all "${_f} ${_h}\n")
  endforeach()
  string(SHA256 _sum "${_all}")
  set(${out_var} "${_sum}" PARENT_SCOPE)
endfunction()

// Build and runtime information, thread settings, device checks.
#include <pybind11/stl.h>

#include "register.h"
#include "tformer/backends.h"
#include "tformer/profile.h"
#include "tformer/tensor.h"

#ifndef TFORMER_VERSION
#define TFORMER_VERSION "0.0.0"
#endif

namespace py = pybind11;

namespace tformer::bindings {

void register_info(py::module_& m) {
  m.attr("__version__") = TFORMER_VERSION;
  m.def("set_num_threads", &tformer::set_num_threads, py::arg("n"),
        "Threads used by CPU kernels and BLAS (default: the available cores, or OMP_NUM_THREADS).");
  m.def("get_num_threads", &tformer::get_num_threads, "Threads used by CPU kernels and BLAS (see set_num_threads).");
  m.def("cuda_backend_built", &tformer::cuda_backend_built, "Whether this build has the CUDA backend (libtformer_cuda.so).");
  m.def("cuda_available", &tformer::cuda_available, py::call_guard<py::gil_scoped_release>(),
        "Whether the CUDA backend loads and sees at least one GPU.");
  m.def("cuda_library_path", &tformer::cuda_library_path, py::call_guard<py::gil_scoped_release>(),
        "The libtformer_cuda.so loaded (TFORMER_CUDA_LIBRARY's file, if set).");
  m.def("cuda_unavailable_reason", &tformer::cuda_unavailable_reason, py::call_guard<py::gil_scoped_release>(),
        "Why CUDA cannot be used ('' when it can).");
  m.def("blas_info", &tformer::blas_info, "The BLAS library the CPU matrix products run on.");
  m.def("check_device", [](const std::string& name) {
    const Device d = parse_device(name);
    check_device(d);
    return device_name(d);
  }, py::arg("device"), "Parses and checks a device string; returns its canonical name.");
  m.def("canonical_dtype", [](const std::string& name) { return std::string(dtype_name(parse_dtype(name))); },
        py::arg("dtype"), "A dtype's canonical name (ValueError for unknown names).");
  m.def("empty_cache", [](const std::string& device) { backend_for(parse_device(device)).empty_cache(); },
        py::arg("device") = "cpu", "Returns cached memory blocks of a device to the system.");
  m.def("tensor_allocations", &tformer::tensor_allocations,
        "Tensor memory allocations so far (all devices); the decode loop makes none.");
  m.def("profile_report", &tformer::profile::report, "Per-op times recorded with TFORMER_PROFILE=1.");
  m.def("profile_reset", &tformer::profile::reset, "Clears the per-op times of profile_report.");
  m.def("cuda_device_count", [] { return cuda_available() ? backend_for(DeviceType::cuda).device_count() : 0; },
        "GPUs the CUDA backend sees (0 without CUDA).");
  m.def("cuda_backend_name", [] { return backend_for(DeviceType::cuda).name(); }, "The CUDA backend's name.");
}

}  // namespace tformer::bindings

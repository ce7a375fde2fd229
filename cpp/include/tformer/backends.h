// Where the core finds a Backend for a device. The CPU backend is built in; the CUDA
// backend is loaded on first use from libtformer_cuda.so next to the module, or from the
// file TFORMER_CUDA_LIBRARY names.
#pragma once

#include <string>

#include "tformer/backend.h"

namespace tformer {

Backend& backend_for(DeviceType type);  // throws std::runtime_error if unavailable
Backend& backend_for(const Device& device);

// Checks that the device exists (e.g. cuda:1 on a 1-GPU machine), throws otherwise.
void check_device(const Device& device);

bool cuda_backend_built();          // libtformer_cuda.so was built with this package
bool cuda_available();              // it loads and sees at least one GPU
std::string cuda_unavailable_reason();  // why not, or "" when available
std::string cuda_library_path();        // the CUDA backend file loaded, or "" when unavailable

void set_num_threads(int n);  // OpenMP pool and BLAS threads; n >= 1
int get_num_threads();
std::string blas_info();

}  // namespace tformer

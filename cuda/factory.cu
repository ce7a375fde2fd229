// The library's one exported symbol: tformer_cuda_backend_create (backend.h). It
// finds out whether CUDA is usable here and says why not, without ever throwing:
// the core shows the message when a user asks for a CUDA device that isn't there.
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "cuda_backend.h"

namespace tformer::cuda {
namespace {

std::string version_string(int v) {  // 12040 -> "12.4"
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

// The lowest architecture this library has machine code or PTX for.
int lowest_built_arch() {
  constexpr int archs[] = {__CUDA_ARCH_LIST__};  // e.g. 800,860,890,900
  return *std::min_element(std::begin(archs), std::end(archs));
}

// Empty when CUDA is usable; else why not.
std::string probe(int* device_count) {
  // The static cudart loads the driver itself, but its error for a missing driver
  // ("insufficient driver") would mislead.
  void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (driver == nullptr) {
    const char* why = dlerror();
    return std::string("CUDA driver not found (") + (why ? why : "libcuda.so.1 not loadable") +
           "); install the NVIDIA driver";
  }
  dlclose(driver);

  const cudaError_t err = cudaGetDeviceCount(device_count);
  if (err == cudaErrorInsufficientDriver) {
    int driver_version = 0;
    cudaDriverGetVersion(&driver_version);
    return "CUDA driver too old: it supports CUDA " + version_string(driver_version) +
           ", libtformer_cuda needs CUDA " + version_string(CUDART_VERSION) +
           " or newer; update the NVIDIA driver";
  }
  if (err == cudaErrorNoDevice || (err == cudaSuccess && *device_count == 0)) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    return std::string("no CUDA device visible") +
           (visible ? std::string(" (CUDA_VISIBLE_DEVICES=\"") + visible + "\")" : "");
  }
  if (err != cudaSuccess) {
    return std::string("CUDA initialization failed: cudaGetDeviceCount returned ") +
           cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
  }

  const int lowest = lowest_built_arch();
  std::string too_old;
  for (int i = 0; i < *device_count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    if (prop.major * 100 + prop.minor * 10 >= lowest) return "";
    too_old += (too_old.empty() ? "" : ", ") + std::string("cuda:") + std::to_string(i) + " is sm_" +
               std::to_string(prop.major) + std::to_string(prop.minor) + " (" + prop.name + ")";
  }
  return "no usable CUDA device: " + too_old + ", but libtformer_cuda was built for sm_" +
         std::to_string(lowest / 10) + " and newer (TFORMER_CUDA_ARCHS)";
}

void write_error(char* error, size_t error_size, const std::string& message) {
  if (error != nullptr && error_size > 0) std::snprintf(error, error_size, "%s", message.c_str());
}

}  // namespace
}  // namespace tformer::cuda

extern "C" __attribute__((visibility("default"))) tformer::Backend* tformer_cuda_backend_create(
    char* error, size_t error_size) {
  try {
    int device_count = 0;
    const std::string why = tformer::cuda::probe(&device_count);
    if (!why.empty()) {
      tformer::cuda::write_error(error, error_size, why);
      return nullptr;
    }
    return new tformer::cuda::CudaBackend(device_count);
  } catch (const std::exception& e) {
    tformer::cuda::write_error(error, error_size, std::string("CUDA backend failed to start: ") + e.what());
  } catch (...) {
    tformer::cuda::write_error(error, error_size, "CUDA backend failed to start: unknown error");
  }
  return nullptr;
}

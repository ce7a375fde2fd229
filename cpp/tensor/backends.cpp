#include "tformer/backends.h"

#include <dlfcn.h>

#include <memory>
#include <mutex>
#include <string>

#include "tformer/errors.h"

namespace tformer {

Backend& cpu_backend();  // ops/cpu_backend.cpp

namespace {

struct CudaLoad {
  std::once_flag once;
  Backend* backend = nullptr;
  std::string error;
  bool library_found = false;
};

CudaLoad& cuda_load() {
  static CudaLoad* s = new CudaLoad();  // leaked: a backend must outlive static tensors
  return *s;
}

// The directory of the shared object that contains this code (the _core module).
std::string own_directory() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&own_directory), &info) == 0 || !info.dli_fname) return ".";
  std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

void load_cuda_backend(CudaLoad& s) {
  const std::string path = own_directory() + "/libtformer_cuda.so";
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    std::string msg = why ? why : "unknown error";
    s.library_found = msg.find("No such file") == std::string::npos ||
                      msg.find("libtformer_cuda.so") == std::string::npos;
    if (!s.library_found) {
      s.error = "this tformer build has no CUDA backend (libtformer_cuda.so was not built; "
                "rebuild with nvcc and cuBLAS present, or -DTFORMER_CUDA=ON)";
    } else {
      s.error = cat("the CUDA backend could not be loaded: ", msg,
                    ". Install the CUDA libraries with: pip install \"tformer[cuda]\" "
                    "(nvidia-cublas for CUDA 13)");
    }
    return;
  }
  s.library_found = true;
  auto factory = reinterpret_cast<tformer_backend_factory_fn>(dlsym(lib, TFORMER_CUDA_BACKEND_SYMBOL));
  if (!factory) {
    s.error = cat("libtformer_cuda.so has no symbol ", TFORMER_CUDA_BACKEND_SYMBOL);
    return;
  }
  char err[512] = {0};
  s.backend = factory(err, sizeof(err));
  if (!s.backend) s.error = cat("CUDA is not available: ", err[0] ? err : "no CUDA device");
}

}  // namespace

Backend& backend_for(DeviceType type) {
  if (type == DeviceType::cpu) return cpu_backend();
  CudaLoad& s = cuda_load();
  std::call_once(s.once, load_cuda_backend, std::ref(s));
  if (!s.backend) throw std::runtime_error(s.error);
  return *s.backend;
}

Backend& backend_for(const Device& device) { return backend_for(device.type); }

void check_device(const Device& device) {
  if (device.is_cpu()) {
    if (device.index != 0) throw_value_error("device cpu has no index ", device.index);
    return;
  }
  Backend& b = backend_for(device.type);
  const int n = b.device_count();
  if (device.index < 0 || device.index >= n)
    throw_value_error("device ", device_name(device), " does not exist: ", n, " CUDA device",
                      n == 1 ? "" : "s", " visible");
}

bool cuda_backend_built() {
#if TFORMER_BUILT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available() {
  try {
    return backend_for(DeviceType::cuda).device_count() > 0;
  } catch (const std::exception&) {
    return false;
  }
}

std::string cuda_unavailable_reason() {
  try {
    backend_for(DeviceType::cuda);
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace tformer

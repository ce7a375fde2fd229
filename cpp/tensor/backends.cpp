#include "tformer/backends.h"

#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <string>

#include "tformer/errors.h"

// Set by CMake from the CUDA build (cmake/cuda_backend.cmake); unused without one.
#ifndef TFORMER_CUDA_MAJOR
#define TFORMER_CUDA_MAJOR 13
#endif
#ifndef TFORMER_CUBLAS_VERSION
#define TFORMER_CUBLAS_VERSION "13"
#endif

namespace tformer {

Backend& cpu_backend();  // ops/cpu_backend.cpp

namespace {

struct CudaLoad {
  std::once_flag once;
  Backend* backend = nullptr;
  std::string error;
  std::string path;  // of the library loaded, once it works
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

bool file_exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// The file a dlopen handle was loaded from (for messages).
std::string loaded_path(void* handle) {
  link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || map == nullptr || map->l_name == nullptr) return "?";
  return map->l_name;
}

#define TFORMER_STR2(x) #x
#define TFORMER_STR(x) TFORMER_STR2(x)

// cuBLAS, the one CUDA library that libtformer_cuda.so links dynamically (cudart is
// static in it). libcublasLt comes first: libcublas needs it.
constexpr const char* kCudaMajor = TFORMER_STR(TFORMER_CUDA_MAJOR);
const std::string kCublasLibs[] = {std::string("libcublasLt.so.") + kCudaMajor,
                                   std::string("libcublas.so.") + kCudaMajor};
const std::string kInstallHint = "install them with: pip install \"tformer[cuda]\"";

std::string needed_libraries() {
  return cat(kCublasLibs[1], " and ", kCublasLibs[0], " (cuBLAS ", kCudaMajor, ".x, built with ",
             TFORMER_CUBLAS_VERSION, ")");
}

// Loads cuBLAS before libtformer_cuda.so, so that its NEEDED entries resolve to these
// copies: first from the nvidia-cublas wheel next to our package (site-packages/nvidia/
// cu13/lib; nvidia/cublas/lib is the CUDA 12 wheels' layout), else from the system
// library path (LD_LIBRARY_PATH, ldconfig). Empty on success, else the error message.
std::string load_cublas(const std::string& own_dir) {
  std::string wheel_dir;
  for (const std::string& dir : {cat(own_dir, "/../nvidia/cu", kCudaMajor, "/lib"), own_dir + "/../nvidia/cublas/lib"}) {
    char resolved[PATH_MAX];
    if (file_exists(dir + "/" + kCublasLibs[0]) && file_exists(dir + "/" + kCublasLibs[1]) &&
        realpath(dir.c_str(), resolved) != nullptr) {
      wheel_dir = resolved;
      break;
    }
  }
  for (const std::string& lib : kCublasLibs) {
    const std::string path = wheel_dir.empty() ? lib : wheel_dir + "/" + lib;
    if (dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL) != nullptr) continue;
    const char* why = dlerror();
    const std::string reason = why ? why : "unknown error";
    if (wheel_dir.empty() && reason.find("cannot open shared object file") != std::string::npos)
      return cat("device=\"cuda\" needs ", needed_libraries(), ", and ", lib,
                 " was not found (neither the nvidia-cublas wheel nor the system library path has it); ",
                 kInstallHint);
    return cat("device=\"cuda\" needs ", needed_libraries(), ", but ", path, " could not be loaded: ", reason,
               "; ", kInstallHint);
  }
  return "";
}

// TFORMER_CUDA_LIBRARY=<path>: a CUDA backend library to load instead of the packaged
// one (a user's own build, or bench/gpu/emulate's libtformer_cuda_emulated.so). cuBLAS is
// still loaded first where it is found, since a real build links it; where it is not, the
// named library's own dependencies decide whether it loads.
std::string library_override() {
  const char* named = std::getenv("TFORMER_CUDA_LIBRARY");
  return named != nullptr ? named : "";
}

void load_cuda_backend(CudaLoad& s) {
  const std::string own_dir = own_directory();
  const std::string named = library_override();
  const std::string path = named.empty() ? own_dir + "/libtformer_cuda.so" : named;
  // How messages name the library: the variable too when it was the user's choice.
  const std::string what = named.empty() ? std::string("libtformer_cuda.so") : cat("TFORMER_CUDA_LIBRARY=", named);
  if (!named.empty()) {
    if (!file_exists(path)) {
      s.error = cat(what, ": no such file (unset TFORMER_CUDA_LIBRARY to use the packaged CUDA backend)");
      return;
    }
    load_cublas(own_dir);  // best effort, see library_override()
  } else {
    if (!cuda_backend_built() || !file_exists(path)) {
      s.error = "this tformer build has no CUDA backend (libtformer_cuda.so was not built; install a tformer "
                "wheel built with CUDA, or build from source with nvcc and cuBLAS present: TFORMER_CUDA=ON)";
      return;
    }
    s.error = load_cublas(own_dir);
    if (!s.error.empty()) return;
  }
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    if (!named.empty()) {
      s.error = cat(what, " could not be loaded: ", why ? why : "unknown error");
      return;
    }
    // cuBLAS loaded, so what is left is a cuBLAS older than ours (a missing symbol) or a damaged file.
    void* cublas = dlopen(kCublasLibs[1].c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    s.error = cat("the CUDA backend could not be loaded: ", why ? why : "unknown error", " (cuBLAS from ",
                  cublas ? loaded_path(cublas) : std::string("?"), "; tformer needs ", needed_libraries(),
                  "); ", kInstallHint);
    return;
  }
  auto factory = reinterpret_cast<tformer_backend_factory_fn>(dlsym(lib, TFORMER_CUDA_BACKEND_SYMBOL));
  if (!factory) {
    s.error = cat(what, " has no symbol ", TFORMER_CUDA_BACKEND_SYMBOL, named.empty() ? "" : " (not a tformer CUDA backend)");
    return;
  }
  char err[512] = {0};
  s.backend = factory(err, sizeof(err));
  if (!s.backend) s.error = cat("CUDA is not available: ", err[0] ? err : "no CUDA device");
  else s.path = loaded_path(lib);
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

std::string cuda_library_path() {
  return cuda_available() ? cuda_load().path : std::string();
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

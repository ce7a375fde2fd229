// CudaBackend: memory and copies go straight to the CUDA runtime on the device's
// stream; ops go to the launchers registered by TFORMER_CUDA_OP (ops.h), through
// lock_device. Every call that uses the stream holds
// the device's lock while it enqueues (see "Threads" in device_state.h).
#include "cuda_backend.h"

#include <cublasLt.h>

#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "ops.h"

namespace tformer::cuda {

namespace {

std::string version_string(int v) {  // 13000 -> "13.0"
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

std::string describe(int device_count) {
  cudaDeviceProp prop{};
  TFORMER_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int driver = 0;
  TFORMER_CUDA_CHECK(cudaDriverGetVersion(&driver));
  int cublas_major = 0, cublas_minor = 0;
  cublasGetProperty(MAJOR_VERSION, &cublas_major);
  cublasGetProperty(MINOR_VERSION, &cublas_minor);
  const size_t lt = cublasLtGetVersion();  // e.g. 131000
  std::string s = "cuda (" + std::to_string(device_count) + " x " + prop.name + ", sm_" +
                  std::to_string(prop.major) + std::to_string(prop.minor) + ", runtime " +
                  version_string(CUDART_VERSION) + ", driver " + version_string(driver) +
                  ", cuBLAS " + std::to_string(cublas_major) + "." + std::to_string(cublas_minor) +
                  ", cuBLASLt " + std::to_string(lt / 10000) + "." + std::to_string(lt / 100 % 100) + ")";
  return s;
}

}  // namespace

CudaBackend::CudaBackend(int device_count) : name_(describe(device_count)) {
  devices_.reserve(device_count);
  for (int i = 0; i < device_count; ++i) devices_.push_back(std::make_unique<DeviceState>(i));
}

DeviceState& CudaBackend::device(int device_index) {
  if (device_index < 0 || device_index >= static_cast<int>(devices_.size())) {
    throw std::invalid_argument("cuda:" + std::to_string(device_index) + " does not exist (" +
                                std::to_string(devices_.size()) + " CUDA devices visible)");
  }
  TFORMER_CUDA_CHECK(cudaSetDevice(device_index));
  return *devices_[device_index];
}

CudaBackend::LockedState CudaBackend::lock_state(int device_index) {
  DeviceState& d = device(device_index);
  return {d, std::unique_lock<std::mutex>(d.mutex())};
}

// ---------------------------------------------------------------- memory
// allocate/deallocate/empty_cache take only the allocator's own mutex.

void* CudaBackend::allocate(size_t bytes, int device_index) {
  return device(device_index).allocator().allocate(bytes);
}

void CudaBackend::deallocate(void* ptr, size_t bytes, int device_index) {
  device(device_index).allocator().deallocate(ptr, bytes);
}

void CudaBackend::empty_cache() {
  // Only devices with a cache: cudaSetDevice would create a context on the others.
  for (size_t i = 0; i < devices_.size(); ++i) {
    if (devices_[i]->allocator().cached_bytes() == 0) continue;
    device(static_cast<int>(i)).allocator().empty_cache();
  }
}

void CudaBackend::copy_from_host(void* dst, const void* src, size_t bytes, int device_index) {
  if (bytes == 0) return;
  LockedState d = lock_state(device_index);
  // From pageable memory this returns once `src` has been read into a staging buffer,
  // so the caller may free or reuse it at once.
  TFORMER_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, d.state.stream()));
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes, int device_index) {
  if (bytes == 0) return;
  cudaStream_t stream = nullptr;
  {
    LockedState d = lock_state(device_index);
    stream = d.state.stream();
    TFORMER_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
  }
  // Wait unlocked, so that other threads may enqueue meanwhile (the stream outlives us).
  TFORMER_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void CudaBackend::copy_on_device(void* dst, const void* src, size_t bytes, int device_index) {
  if (bytes == 0 || dst == src) return;
  LockedState d = lock_state(device_index);
  TFORMER_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, d.state.stream()));
}

void CudaBackend::fill_zero(void* dst, size_t bytes, int device_index) {
  if (bytes == 0) return;
  LockedState d = lock_state(device_index);
  TFORMER_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, d.state.stream()));
}

void CudaBackend::synchronize(int device_index) {
  cudaStream_t stream = nullptr;
  {
    LockedState d = lock_state(device_index);
    stream = d.state.stream();
  }
  TFORMER_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// ---------------------------------------------------------------- op entries (ops.h)

StreamBackend::Locked CudaBackend::lock_device(int device_index) {
  DeviceState& d = device(device_index);
  std::unique_lock<std::mutex> lock(d.mutex());
  cudaStream_t stream = d.stream();  // created on first use, under the lock
  return {stream, d.allocator(), std::move(lock)};
}

cublasHandle_t CudaBackend::cublas(int device_index) { return devices_[device_index]->cublas(); }

void CudaBackend::wait(cudaStream_t stream) { TFORMER_CUDA_CHECK(cudaStreamSynchronize(stream)); }

}  // namespace tformer::cuda

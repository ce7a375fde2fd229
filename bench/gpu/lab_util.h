// Shared helpers of the GPU lab programs (check_backend.cpp, time_backend.cpp):
// load libtformer_cuda.so the way the core does, move float data to and from the
// device in any float dtype, random data. Host-only C++: no CUDA headers needed.
#pragma once

#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "tformer/train_ops.h"  // the op families' params (an umbrella over tformer/ops/*.h)

namespace lab {

inline tformer::Backend* load_backend(const char* path) {
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) throw std::runtime_error(std::string("dlopen: ") + dlerror());
  auto create = reinterpret_cast<tformer_backend_factory_fn>(dlsym(lib, TFORMER_CUDA_BACKEND_SYMBOL));
  if (create == nullptr) throw std::runtime_error(std::string("dlsym: ") + dlerror());
  char error[1024] = "";
  tformer::Backend* backend = create(error, sizeof error);
  if (backend == nullptr) throw std::runtime_error(std::string("factory: ") + error);
  return backend;
}

// ---------------------------------------------------------------- half types on the host

inline uint16_t f32_to_bf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f32_to_f16(float f) {  // round to nearest even, via scaling
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const float a = std::fabs(f);
  if (std::isnan(f)) return 0x7e00;
  if (a >= 65520.0f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (a < 6.103515625e-05f) {  // subnormal: units of 2^-24
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(a * 16777216.0f)));
  }
  int e;
  const float m = std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1)
  uint32_t mant = static_cast<uint32_t>(std::nearbyint((m * 2.0f - 1.0f) * 1024.0f));
  uint32_t exp = static_cast<uint32_t>(e - 1 + 15);
  if (mant == 1024) { mant = 0; ++exp; }
  return static_cast<uint16_t>(sign | (exp << 10) | mant);
}
inline float f16_to_f32(uint16_t h) {
  const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float v;
  if (exp == 0) v = std::ldexp(float(mant), -24);
  else if (exp == 31) v = mant ? NAN : INFINITY;
  else v = std::ldexp(float(mant + 1024), int(exp) - 25);
  return (h & 0x8000) ? -v : v;
}

// The value `x` takes once stored as `dtype`.
inline float round_to(tformer::DType dtype, float x) {
  switch (dtype) {
    case tformer::DType::f16: return f16_to_f32(f32_to_f16(x));
    case tformer::DType::bf16: return bf16_to_f32(f32_to_bf16(x));
    default: return x;
  }
}

// ---------------------------------------------------------------- device buffers

class Buffer {
 public:
  Buffer(tformer::Backend* be, tformer::DType dtype, size_t n)
      : be_(be), dtype_(dtype), n_(n), bytes_(n * tformer::dtype_size(dtype)) {
    ptr_ = be_->allocate(bytes_, 0);
  }
  ~Buffer() { be_->deallocate(ptr_, bytes_, 0); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() { return ptr_; }
  size_t size() const { return n_; }

  void upload(const std::vector<float>& v) {
    std::vector<uint8_t> raw(bytes_);
    for (size_t i = 0; i < n_; ++i) {
      if (dtype_ == tformer::DType::f32) std::memcpy(&raw[4 * i], &v[i], 4);
      const uint16_t h = dtype_ == tformer::DType::f16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
      if (dtype_ != tformer::DType::f32) std::memcpy(&raw[2 * i], &h, 2);
    }
    be_->copy_from_host(ptr_, raw.data(), bytes_, 0);
  }
  void upload_i32(const std::vector<int32_t>& v) { be_->copy_from_host(ptr_, v.data(), bytes_, 0); }
  void upload_bytes(const std::vector<uint8_t>& v) { be_->copy_from_host(ptr_, v.data(), bytes_, 0); }
  std::vector<uint8_t> download_bytes() {
    std::vector<uint8_t> v(bytes_);
    be_->copy_to_host(v.data(), ptr_, bytes_, 0);
    return v;
  }

  std::vector<float> download() {
    std::vector<uint8_t> raw(bytes_);
    be_->copy_to_host(raw.data(), ptr_, bytes_, 0);
    std::vector<float> v(n_);
    for (size_t i = 0; i < n_; ++i) {
      if (dtype_ == tformer::DType::f32) { std::memcpy(&v[i], &raw[4 * i], 4); continue; }
      uint16_t h;
      std::memcpy(&h, &raw[2 * i], 2);
      v[i] = dtype_ == tformer::DType::f16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    return v;
  }

 private:
  tformer::Backend* be_;
  tformer::DType dtype_;
  size_t n_, bytes_;
  void* ptr_;
};

// Normal random values, already rounded to `dtype` so host references see what the
// device sees.
// n float32 values from device memory.
inline std::vector<float> download_f32(tformer::Backend* be, void* ptr, size_t n) {
  std::vector<float> v(n);
  be->copy_to_host(v.data(), ptr, n * sizeof(float), 0);
  return v;
}

inline std::vector<float> random_values(std::mt19937& rng, size_t n, tformer::DType dtype,
                                        float mean = 0.0f, float std = 1.0f) {
  std::normal_distribution<float> dist(mean, std);
  std::vector<float> v(n);
  for (auto& x : v) x = round_to(dtype, dist(rng));
  return v;
}

}  // namespace lab

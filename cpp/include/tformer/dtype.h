// Element types and devices. Kept free of any other tformer header so that the
// CUDA backend library (built by nvcc) can include it alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tformer {

enum class DType : int32_t { f32 = 0, f16 = 1, bf16 = 2, i32 = 3, i8 = 4 };

enum class DeviceType : int32_t { cpu = 0, cuda = 1 };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
};

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i8: return 1;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::i32: return "int32";
    case DType::i8: return "int8";
  }
  return "?";
}

inline bool dtype_is_float(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

// Parses "float32"/"fp32"/"f32", "float16"/"fp16"/"half", "bfloat16"/"bf16", "int32", "int8".
// Throws std::invalid_argument naming the accepted spellings.
DType parse_dtype(const std::string& name);

// Parses "cpu", "cuda", "cuda:N". Throws std::invalid_argument otherwise.
Device parse_device(const std::string& name);
std::string device_name(const Device& d);

}  // namespace tformer

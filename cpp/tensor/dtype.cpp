#include "tformer/dtype.h"

#include <cctype>
#include <cstdlib>
#include <stdexcept>

#include "tformer/errors.h"

namespace tformer {

DType parse_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32" || name == "f32" || name == "float") return DType::f32;
  if (name == "float16" || name == "fp16" || name == "f16" || name == "half") return DType::f16;
  if (name == "bfloat16" || name == "bf16") return DType::bf16;
  if (name == "int32" || name == "i32") return DType::i32;
  if (name == "int8" || name == "i8") return DType::i8;
  throw_value_error("unknown dtype '", name,
                    "': expected one of float32, float16, bfloat16, int32, int8");
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device{DeviceType::cpu, 0};
  if (name == "cuda") return Device{DeviceType::cuda, 0};
  if (name.rfind("cuda:", 0) == 0 && name.size() > 5) {
    const std::string idx = name.substr(5);
    bool digits = true;
    for (char ch : idx) digits = digits && std::isdigit(static_cast<unsigned char>(ch));
    if (digits && idx.size() < 6) return Device{DeviceType::cuda, std::atoi(idx.c_str())};
  }
  throw_value_error("unknown device '", name, "': expected 'cpu', 'cuda' or 'cuda:N'");
}

std::string device_name(const Device& d) {
  return d.is_cpu() ? std::string("cpu") : cat("cuda:", d.index);
}

}  // namespace tformer

// An int8 model's parameters (tformer/model.h, tformer/ops/int8.h): each matrix that
// visit_parameters marks with an int8_scale is stored as int8 with one float32 scale per
// row; every other parameter stays float32. Tied matrices are one int8 copy (tie_weights
// moves the scales with them).
#include <cmath>

#include "tformer/errors.h"
#include "tformer/model.h"
#include "tformer/ops/int8.h"

namespace tformer {

const Transformer::Slot& Transformer::resolved_slot(const std::string& name) const {
  for (const ParameterAlias& alias : aliases_)
    if (alias.name == name) return resolved_slot(alias.owner);
  auto it = slots_.find(name);
  if (it == slots_.end()) throw_value_error("unknown parameter '", name, "' for this config");
  return it->second;
}

bool Transformer::is_int8_parameter(const std::string& name) const { return resolved_slot(name).scale != nullptr; }

Tensor Transformer::quantized(const Tensor& value, Tensor& scale) {
  Tensor host = value.to_dtype(DType::f32).to(Device{});
  Tensor q = Tensor::empty(host.shape(), DType::i8);
  scale = Tensor::empty({host.dim(0)}, DType::f32);
  ops::quantize_rows(q, scale, host);
  return q;
}

void Transformer::set_int8_parameters(const std::vector<Int8Value>& values) {
  if (dtype_ != DType::i8)
    throw_value_error("set_int8_parameters needs an int8 model, this one is ", dtype_name(dtype_),
                      " (set float values with set_parameters)");
  // Checked and copied first: nothing changes on an error, and the model never aliases
  // the caller's buffers.
  std::vector<Int8Value> owned;
  owned.reserve(values.size());
  for (const Int8Value& v : values) {
    auto it = slots_.find(v.name);
    if (it == slots_.end()) throw_value_error("unknown parameter '", v.name, "' for this config");
    const Slot& s = it->second;
    if (!s.scale)
      throw_value_error("parameter '", v.name, "' is not an int8 matrix (an int8 model keeps it in float32): ",
                        "set it with set_parameters");
    if (v.q.dtype() != DType::i8) throw_value_error("parameter '", v.name, "': expected int8 values, got ", dtype_name(v.q.dtype()));
    if (v.q.shape() != s.shape)
      throw_value_error("parameter '", v.name, "': expected int8 values of shape ", shape_str(s.shape), ", got ",
                        shape_str(v.q.shape()));
    if (v.scale.dtype() != DType::f32)
      throw_value_error("parameter '", v.name, "': expected float32 scales, got ", dtype_name(v.scale.dtype()));
    if (v.scale.shape() != Shape{s.shape[0]})
      throw_value_error("parameter '", v.name, "': expected scales of shape ", shape_str(Shape{s.shape[0]}), ", got ",
                        shape_str(v.scale.shape()));
    Int8Value copy{v.name, Tensor::empty(v.q.shape(), DType::i8), Tensor::empty(v.scale.shape(), DType::f32)};
    copy.q.copy_from(v.q);
    copy.scale.copy_from(v.scale);
    const float* sc = copy.scale.data<float>();
    for (int64_t r = 0; r < s.shape[0]; ++r)
      if (!std::isfinite(sc[r]) || sc[r] < 0.0f)
        throw_value_error("parameter '", v.name, "': scale of row ", r, " is ", sc[r],
                          "; scales must be finite and >= 0");
    owned.push_back(std::move(copy));
  }
  WeightsLock::Exclusive writing(*weights_lock_);
  for (Int8Value& v : owned) {
    const Slot& s = slots_.at(v.name);
    *s.member = v.q;
    *s.scale = v.scale;
  }
  tie_weights(config_, *weights_);
}

Transformer::Int8Value Transformer::copy_int8_parameter(const std::string& name) const {
  WeightsLock::Shared reading(*weights_lock_);
  const Slot& s = resolved_slot(name);
  if (!s.scale) {
    if (dtype_ != DType::i8) throw_value_error("parameter '", name, "': the model is ", dtype_name(dtype_), ", not int8");
    throw_value_error("parameter '", name, "' is not an int8 matrix (an int8 model keeps it in float32)");
  }
  if (!s.member->defined()) throw_value_error("parameter '", name, "' has not been set");
  Int8Value out{name, Tensor::empty(s.member->shape(), DType::i8), Tensor::empty(s.scale->shape(), DType::f32)};
  out.q.copy_from(*s.member);
  out.scale.copy_from(*s.scale);
  return out;
}

}  // namespace tformer

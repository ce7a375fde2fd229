#include "tformer/tensor.h"

#include <atomic>
#include <cstring>

#include "tformer/backends.h"
#include "tformer/errors.h"
#include "tformer/ops/cast.h"

namespace tformer {

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ------------------------------------------------------------------ Storage

static std::atomic<int64_t> g_allocations{0};

int64_t tensor_allocations() { return g_allocations.load(); }

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  data_ = backend_for(device).allocate(bytes, device.index);
  g_allocations.fetch_add(1, std::memory_order_relaxed);
}

Storage::Storage(void* data, size_t bytes, Device device, std::shared_ptr<void> owner)
    : data_(data), bytes_(bytes), device_(device), owner_(std::move(owner)) {}

Storage::~Storage() {
  if (owner_ || data_ == nullptr) return;
  backend_for(device_).deallocate(data_, bytes_, device_.index);
}

// ------------------------------------------------------------------ Tensor

static void check_shape(const Shape& shape) {
  for (int64_t d : shape)
    if (d < 0) throw_value_error("negative dimension in shape ", shape_str(shape));
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape);
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(t.nbytes(), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_zero();
  return t;
}

Tensor Tensor::from_host(const void* data, const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (t.nbytes()) backend_for(device).copy_from_host(t.raw(), data, t.nbytes(), device.index);
  return t;
}

Tensor Tensor::wrap_host(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner) {
  check_shape(shape);
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(data, t.nbytes(), Device{}, std::move(owner));
  return t;
}

int64_t Tensor::dim(int64_t i) const {
  const int64_t n = ndim();
  if (i < 0) i += n;
  if (i < 0 || i >= n) throw std::out_of_range(cat("dimension ", i, " out of range for ", describe()));
  return shape_[static_cast<size_t>(i)];
}

const Device& Tensor::device() const {
  static const Device cpu{};
  return storage_ ? storage_->device() : cpu;
}

void* Tensor::raw() const {
  if (!storage_) return nullptr;
  return static_cast<char*>(storage_->data()) + offset_;
}

Tensor Tensor::reshape(const Shape& shape) const {
  check_shape(shape);
  if (shape_numel(shape) != numel())
    throw_value_error("cannot reshape ", describe(), " to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice(int64_t start, int64_t end) const {
  if (ndim() == 0 || start < 0 || end < start || end > shape_[0])
    throw std::out_of_range(cat("slice [", start, ", ", end, ") out of range for ", describe()));
  Tensor t = *this;
  const int64_t row = numel() / (shape_[0] ? shape_[0] : 1);
  t.offset_ += static_cast<size_t>(start * row) * dtype_size(dtype_);
  t.shape_[0] = end - start;
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to_dtype(DType dtype) const {
  if (dtype == dtype_) return *this;
  if (!dtype_is_float(dtype) || !dtype_is_float(dtype_))
    throw_type_error("cannot convert ", describe(), " to ", dtype_name(dtype),
                     ": only conversions between float types are supported");
  Tensor t = empty(shape_, dtype, device());
  t.cast_from(*this);
  return t;
}

void Tensor::cast_from(const Tensor& src) {
  if (src.shape_ != shape_ || src.device() != device() || !dtype_is_float(src.dtype_) || !dtype_is_float(dtype_))
    throw_value_error("cast_from: expected a float tensor of shape and device like ", describe(), ", got ",
                      src.describe());
  if (numel() == 0) return;
  CastParams p;
  p.src_dtype = src.dtype_;
  p.dst_dtype = dtype_;
  p.n = numel();
  p.src = src.raw();
  p.dst = raw();
  backend_for(device()).run(p, device().index);
}

void Tensor::copy_from(const Tensor& src) {
  if (src.shape_ != shape_ || src.dtype_ != dtype_)
    throw_value_error("copy_from: expected ", describe(), ", got ", src.describe());
  const size_t n = nbytes();
  if (n == 0) return;
  const Device& dst_dev = device();
  const Device& src_dev = src.device();
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(raw(), src.raw(), n);
  } else if (dst_dev.is_cpu()) {
    backend_for(src_dev).copy_to_host(raw(), src.raw(), n, src_dev.index);
  } else if (src_dev.is_cpu()) {
    backend_for(dst_dev).copy_from_host(raw(), src.raw(), n, dst_dev.index);
  } else if (src_dev == dst_dev) {
    backend_for(dst_dev).copy_on_device(raw(), src.raw(), n, dst_dev.index);
  } else {
    copy_from(src.to(Device{}));  // between two GPUs: through the host
  }
}

void Tensor::copy_to_host(void* dst) const {
  const size_t n = nbytes();
  if (n == 0) return;
  if (device().is_cpu()) std::memcpy(dst, raw(), n);
  else backend_for(device()).copy_to_host(dst, raw(), n, device().index);
}

void Tensor::fill_zero() {
  if (nbytes()) backend_for(device()).fill_zero(raw(), nbytes(), device().index);
}

std::string Tensor::describe() const {
  return cat(dtype_name(dtype_), " ", shape_str(shape_), " on ", device_name(device()));
}

}  // namespace tformer

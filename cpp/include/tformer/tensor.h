// Tensor: a shape, a dtype and a device over shared storage. Contiguous row-major
// only; views (slice along the first axis, reshape) share the storage.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tformer/dtype.h"

namespace tformer {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);  // "(2, 3)"
// Device-memory allocations made for tensors since the process started (any device);
// tests use it to check that the decode loop allocates nothing.
int64_t tensor_allocations();
int64_t shape_numel(const Shape& shape);

// Owns a block of device memory; returns it to the device's allocator when the last
// Tensor referring to it goes away. A storage may also wrap foreign memory (a numpy
// buffer) kept alive by `owner`.
class Storage {
 public:
  Storage(size_t bytes, Device device);                                   // allocates
  Storage(void* data, size_t bytes, Device device, std::shared_ptr<void> owner);  // wraps
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  const Device& device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  std::shared_ptr<void> owner_;  // set when wrapping foreign memory
};

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype, Device device = {});
  static Tensor zeros(const Shape& shape, DType dtype, Device device = {});
  // Copies `bytes` of host memory into a new tensor on `device`.
  static Tensor from_host(const void* data, const Shape& shape, DType dtype, Device device = {});
  // Zero-copy view of host memory kept alive by `owner` (used for numpy arrays).
  static Tensor wrap_host(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t ndim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t dim(int64_t i) const;  // negative i counts from the end
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  const Device& device() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  void* raw() const;
  template <typename T>
  T* data() const { return static_cast<T*>(raw()); }

  // Views sharing storage.
  Tensor reshape(const Shape& shape) const;
  Tensor slice(int64_t start, int64_t end) const;  // along axis 0

  // Copies.
  Tensor to(Device device) const;
  Tensor to_dtype(DType dtype) const;  // between float dtypes, on the same device
  // *this = src converted to this tensor's dtype (float types, same shape and device); no allocation.
  void cast_from(const Tensor& src);
  void copy_from(const Tensor& src);   // same shape and dtype, any devices
  void copy_to_host(void* dst) const;
  void fill_zero();

  std::string describe() const;  // "float32 (2, 3) on cpu"

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes
  Shape shape_;
  DType dtype_ = DType::f32;
};

// Rows of t seen as a matrix of its last dimension: 1 for a scalar, 0 when that dimension
// is empty (ops and their bindings size per-row outputs with it).
inline int64_t rows_of(const Tensor& t) { return t.ndim() == 0 ? 1 : (t.dim(-1) ? t.numel() / t.dim(-1) : 0); }

}  // namespace tformer

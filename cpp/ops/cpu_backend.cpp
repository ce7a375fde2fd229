// The built-in CPU backend: host memory from the caching allocator, kernels from
// cpp/ops, threads from one OpenMP pool plus OpenBLAS's own pool of the same size.
#include <cblas.h>
#include <omp.h>
#include <sched.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "../tensor/cpu_allocator.h"
#include "cpu_kernels.h"
#include "tformer/backends.h"
#include "tformer/errors.h"

namespace tformer {
namespace cpu {
namespace {

int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return omp_get_num_procs();
}

int& thread_setting() {
  static int n = 0;
  return n;
}

std::once_flag threads_once;

// What TFORMER_CPU_OP lines record while the library loads.
struct Registration {
  const char* isa;  // null: every build
  const char* name;
  OpFn entry;
};
constexpr int kMaxRegistrations = 4 * OpTable::kCapacity;  // per build, and those of every build
Registration registrations[kMaxRegistrations];  // zero-initialised before any constructor runs
int registration_count = 0;

}  // namespace

// OpenMP's thread count is per calling thread: apply the setting on every thread
// that runs kernels, so a model served from many Python threads obeys it too.
void init_threads() {
  std::call_once(threads_once, [] {
    if (thread_setting() == 0) set_num_threads(default_threads());
  });
  if (omp_get_max_threads() != thread_setting()) omp_set_num_threads(thread_setting());
}

bool register_op(const char* isa, const char* name, OpFn entry) {
  if (registration_count == kMaxRegistrations) throw std::logic_error("too many CPU op registrations");
  registrations[registration_count++] = {isa, name, entry};
  return true;
}

const OpTable& op_table() {
  static const OpTable table = [] {
    OpTable t;
    const char* isa = kernels().isa;
    for (int i = 0; i < registration_count; ++i) {
      const Registration& r = registrations[i];
      if (r.isa == nullptr || std::strcmp(r.isa, isa) == 0) t.add(r.name, r.entry);
    }
    return t;
  }();
  return table;
}

void set_num_threads(int n) {
  if (n < 1) throw_value_error("num_threads must be >= 1, got ", n);
  thread_setting() = n;
  omp_set_num_threads(n);
  scipy_openblas_set_num_threads(1);  // gemm.cpp splits products over the OpenMP pool
}

int get_num_threads() {
  init_threads();
  return thread_setting();
}

std::string blas_info() {
  const char* cfg = scipy_openblas_get_config();
  return cat("OpenBLAS (scipy-openblas32) ", cfg ? cfg : "", ", split over ", get_num_threads(),
             " OpenMP threads; tformer kernels: ", kernels().isa);
}

class CpuBackend final : public Backend {
 public:
  DeviceType type() const override { return DeviceType::cpu; }
  std::string name() const override { return cat("cpu (", kernels().isa, " kernels, ", get_num_threads(), " threads)"); }
  int device_count() const override { return 1; }

  void* allocate(size_t bytes, int) override { return cpu::allocate(bytes); }
  void deallocate(void* ptr, size_t bytes, int) override { cpu::deallocate(ptr, bytes); }
  void empty_cache() override { cpu::empty_cache(); }
  void copy_from_host(void* dst, const void* src, size_t bytes, int) override { std::memcpy(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, size_t bytes, int) override { std::memcpy(dst, src, bytes); }
  void copy_on_device(void* dst, const void* src, size_t bytes, int) override { std::memcpy(dst, src, bytes); }
  void fill_zero(void* dst, size_t bytes, int) override { std::memset(dst, 0, bytes); }
  void synchronize(int) override {}

  const OpTable& op_table() const override { return cpu::op_table(); }
  bool saves_training_stats() const override { return true; }
};

}  // namespace cpu

Backend& cpu_backend() {
  static cpu::CpuBackend* b = new cpu::CpuBackend();  // leaked: outlives static tensors
  return *b;
}

void set_num_threads(int n) { cpu::set_num_threads(n); }
int get_num_threads() { return cpu::get_num_threads(); }
std::string blas_info() { return cpu::blas_info(); }

}  // namespace tformer

// The CPU entry of int8_gemm (tformer/ops/int8.h): the kernel choice, the activation
// quantization into per-thread scratch, and the portable reference kernel (the baseline
// ISA's kernel and the oracle of the tests). Compiled with -ffp-contract=off and the
// baseline flags (CMakeLists.txt): the epilogue's float operations are the contract's, in
// its order, in every kernel.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../cpu_kernels.h"
#include "int8_kernels.h"
#include "tformer/errors.h"

namespace tformer::cpu {
namespace {

// Activation rows quantized by the contract's rule into q (m, stride) and scale (m).
void quantize_activations(const Int8GemmParams& p, int8_t* q, int64_t stride, float* scale) {
  for (int64_t i = 0; i < p.m; ++i) {
    const float* row = p.a + i * p.lda;
    float amax = 0.0f;
    for (int64_t c = 0; c < p.k; ++c) amax = std::max(amax, std::fabs(row[c]));
    int8_t* out = q + i * stride;
    if (!(amax > 0.0f)) {  // zero row (or NaN: garbage in, no crash)
      std::fill(out, out + p.k, int8_t{0});
      scale[i] = 0.0f;
      continue;
    }
    const float inv = 127.0f / amax;
    for (int64_t c = 0; c < p.k; ++c)
      out[c] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, std::nearbyint(row[c] * inv))));
    scale[i] = amax / 127.0f;
  }
}

void gemm_reference(const Int8GemmParams& p, const int8_t* A, const float* as) {
#pragma omp parallel for schedule(static) if (p.m * p.n * p.k > 65536)
  for (int64_t j = 0; j < p.n; ++j) {
    const int8_t* w = p.b + j * p.ldb;
    for (int64_t i = 0; i < p.m; ++i) {
      const int8_t* a = A + i * p.k;
      int32_t acc = 0;
      for (int64_t c = 0; c < p.k; ++c) acc += static_cast<int32_t>(a[c]) * static_cast<int32_t>(w[c]);
      float s = static_cast<float>(acc) * (as[i] * p.b_scale[j]);
      s = p.alpha * s;
      if (p.bias) s = s + p.bias[j];
      p.c[i * p.ldc + j] = s;
    }
  }
}

struct Kernel {
  const char* name;
  int8::KernelFn fn;  // nullptr: the reference
};

#if defined(__x86_64__)
bool has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}
bool has_avx_vnni() { return has_avx2() && __builtin_cpu_supports("avxvnni"); }
bool has_avx512_vnni() {
  return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}
#endif

const char* const kKernelNames = "'avx512_vnni', 'avx_vnni', 'avx2', 'base'";

// TFORMER_INT8_KERNEL=<name> forces one kernel (tests run each on one machine); otherwise
// the best this CPU has, avx512_vnni > avx_vnni > avx2 > base, capped by TFORMER_CPU_ISA
// like the other kernels: "avx2" is what an AVX2-only machine runs (no VNNI), "base" the
// reference.
Kernel choose() {
  const char* forced = std::getenv("TFORMER_INT8_KERNEL");
  if (forced && *forced) {
    const std::string name = forced;
    if (name == "base") return {"base", nullptr};
#if defined(__x86_64__)
    if (name == "avx512_vnni" || name == "avx_vnni" || name == "avx2") {
      if (name == "avx512_vnni" && has_avx512_vnni()) return {"avx512_vnni", &int8::gemm_avx512_vnni};
      if (name == "avx_vnni" && has_avx_vnni()) return {"avx_vnni", &int8::gemm_avx_vnni};
      if (name == "avx2" && has_avx2()) return {"avx2", &int8::gemm_avx2};
      throw_value_error("TFORMER_INT8_KERNEL=", name, ": this CPU lacks the instructions of that kernel");
    }
#endif
    throw_value_error("TFORMER_INT8_KERNEL=", name, " is not an int8 kernel; accepted values: ", kKernelNames);
  }
#if defined(__x86_64__)
  const char* cap = std::getenv("TFORMER_CPU_ISA");
  const bool allow_vnni = !cap || std::strcmp(cap, "avx512") == 0;
  const bool allow_avx2 = allow_vnni || (cap && std::strcmp(cap, "avx2") == 0);
  if (allow_vnni && has_avx512_vnni()) return {"avx512_vnni", &int8::gemm_avx512_vnni};
  if (allow_vnni && has_avx_vnni()) return {"avx_vnni", &int8::gemm_avx_vnni};
  if (allow_avx2 && has_avx2()) return {"avx2", &int8::gemm_avx2};
#endif
  return {"base", nullptr};
}

// Chosen once; a bad TFORMER_INT8_KERNEL raises on every use.
const Kernel& kernel() {
  static const Kernel chosen = choose();
  return chosen;
}

// Per-thread scratch that only grows: no allocation per call in the steady state.
struct Scratch {
  std::vector<int8_t> q;
  std::vector<float> scale;
  std::vector<int32_t> sum;
  std::vector<int8_t> panels;
};

}  // namespace

void int8_gemm(const Int8GemmParams& p) {
  const Kernel& k = kernel();
  thread_local Scratch s;
  const int64_t stride = k.fn ? int8::padded_k(p.k) : p.k;
  if (static_cast<int64_t>(s.q.size()) < p.m * stride) s.q.resize(static_cast<size_t>(p.m * stride));
  if (static_cast<int64_t>(s.scale.size()) < p.m) {
    s.scale.resize(static_cast<size_t>(p.m));
    s.sum.resize(static_cast<size_t>(p.m));
  }
  if (!k.fn) {
    quantize_activations(p, s.q.data(), stride, s.scale.data());
    gemm_reference(p, s.q.data(), s.scale.data());
    return;
  }
#if defined(__x86_64__)
  int8::quantize_rows_avx2(p, s.q.data(), stride, s.scale.data(), s.sum.data());
  const int64_t panel_bytes = int8::kMaxPanelCols * stride;
  const int64_t panel_total = panel_bytes * omp_get_max_threads();
  if (static_cast<int64_t>(s.panels.size()) < panel_total) s.panels.resize(static_cast<size_t>(panel_total));
  static const int64_t panel_min_rows = [] {
    const char* v = std::getenv("TFORMER_INT8_PANEL_ROWS");
    return v && *v ? std::atoll(v) : int64_t{-1};
  }();
  k.fn(p, {s.q.data(), stride, s.scale.data(), s.sum.data(), s.panels.data(), panel_bytes, panel_min_rows});
#endif
}

TFORMER_CPU_OP(int8_gemm);

}  // namespace tformer::cpu

namespace tformer::ops {
std::string cpu_int8_kernel() { return cpu::kernel().name; }
}  // namespace tformer::ops

// Checks cuda/mma.cuh's fragment layouts, the way the attention kernels compose them,
// against float64 products: A by ldmatrix_x4 of a row-major (16, 16) tile; B by
// ldmatrix_x2_trans of a row-major (k, n) tile, by ldmatrix_x4 of a row-major (n, k) tile
// (two n-blocks: Q K^T) and by ldmatrix_x4_trans of a row-major (k, n) tile (two n-blocks:
// P V); and an accumulator pair re-packed as an A fragment with pack2 (P after softmax).
// On a GPU this proves the layouts are the hardware's; on the CPU emulator (emu_mma.h)
// it proves the emulator models the same layouts, so emulated kernel checks mean something.
//   nvcc -std=c++17 -arch=sm_90 -Icuda bench/gpu/check_mma.cu -o /tmp/check_mma && /tmp/check_mma
//   (emulated: bash bench/gpu/emulate/emulate.sh builds and runs it too)
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "mma.cuh"

using namespace tformer::cuda::mma;

namespace {

// out (16, 16) f32 = X (16, 16) . Y where Y is given as Yt (16 n, 16 k) row-major [case 0],
// or Y (16 k, 16 n) row-major [case 1]; out2 (16, 8) = round_T(out) . Z, Z (16 k, 8 n).
template <typename T>
__global__ void mma_kernel(const T* x, const T* y, const T* z, int which, float* out, float* out2) {
  __shared__ __align__(16) T xs[16 * 16];
  __shared__ __align__(16) T ys[16 * 16];
  __shared__ __align__(16) T zs[16 * 8];
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  for (int i = lane; i < 256; i += 32) xs[i] = x[i], ys[i] = y[i];
  for (int i = lane; i < 128; i += 32) zs[i] = z[i];
  __syncthreads();
  uint32_t a[4], b[4];
  ldmatrix_x4(a, xs + (lane % 16) * 16 + (lane / 16) * 8);
  if (which == 0) ldmatrix_x4(b, ys + ((lane / 16) * 8 + lane % 8) * 16 + ((lane / 8) % 2) * 8);
  else ldmatrix_x4_trans(b, ys + (lane % 16) * 16 + (lane / 16) * 8);
  float acc[2][4] = {};
  for (int nb = 0; nb < 2; ++nb) {
    const uint32_t bn[2] = {b[2 * nb], b[2 * nb + 1]};
    mma_16816<T>(acc[nb], a, bn);
    out[g * 16 + nb * 8 + 2 * t] = acc[nb][0], out[g * 16 + nb * 8 + 2 * t + 1] = acc[nb][1];
    out[(g + 8) * 16 + nb * 8 + 2 * t] = acc[nb][2], out[(g + 8) * 16 + nb * 8 + 2 * t + 1] = acc[nb][3];
  }
  const uint32_t p[4] = {pack2<T>(acc[0][0], acc[0][1]), pack2<T>(acc[0][2], acc[0][3]),
                         pack2<T>(acc[1][0], acc[1][1]), pack2<T>(acc[1][2], acc[1][3])};
  uint32_t zb[2];
  ldmatrix_x2_trans(zb, zs + (lane % 16) * 8);
  float d[4] = {1.0f, 1.0f, 1.0f, 1.0f};  // accumulates onto C = 1
  mma_16816<T>(d, p, zb);
  out2[g * 8 + 2 * t] = d[0], out2[g * 8 + 2 * t + 1] = d[1];
  out2[(g + 8) * 8 + 2 * t] = d[2], out2[(g + 8) * 8 + 2 * t + 1] = d[3];
}

template <typename T>
float as_float(T v) { return float(v); }

template <typename T>
int check(const char* name, int which, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<T> x(256), y(256), z(128);
  for (auto& v : x) v = T(u(rng));
  for (auto& v : y) v = T(u(rng));
  for (auto& v : z) v = T(u(rng));
  T *dx, *dy, *dz;
  float *dout, *dout2;
  std::vector<float> out(256), out2(128);
#ifdef TFORMER_LAB_EMULATED
  dx = x.data(), dy = y.data(), dz = z.data(), dout = out.data(), dout2 = out2.data();
  mma_kernel<T><<<1, 32>>>(dx, dy, dz, which, dout, dout2);
#else
  cudaMalloc(&dx, 512), cudaMalloc(&dy, 512), cudaMalloc(&dz, 256), cudaMalloc(&dout, 1024), cudaMalloc(&dout2, 512);
  cudaMemcpy(dx, x.data(), 512, cudaMemcpyHostToDevice), cudaMemcpy(dy, y.data(), 512, cudaMemcpyHostToDevice);
  cudaMemcpy(dz, z.data(), 256, cudaMemcpyHostToDevice);
  mma_kernel<T><<<1, 32>>>(dx, dy, dz, which, dout, dout2);
  const cudaError_t err = cudaMemcpy(out.data(), dout, 1024, cudaMemcpyDeviceToHost);
  cudaMemcpy(out2.data(), dout2, 512, cudaMemcpyDeviceToHost);
  cudaFree(dx), cudaFree(dy), cudaFree(dz), cudaFree(dout), cudaFree(dout2);
  if (err != cudaSuccess) {
    std::printf("FAIL %s: %s\n", name, cudaGetErrorString(err));
    return 1;
  }
#endif
  double worst = 0.0, worst2 = 0.0;
  std::vector<float> rounded(256);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      double s = 0.0;
      for (int k = 0; k < 16; ++k)
        s += double(as_float(x[i * 16 + k])) * (which == 0 ? as_float(y[j * 16 + k]) : as_float(y[k * 16 + j]));
      worst = std::max(worst, std::fabs(out[i * 16 + j] - s) / (1.0 + std::fabs(s)));
      rounded[i * 16 + j] = as_float(T(out[i * 16 + j]));
    }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      double s = 1.0;
      for (int k = 0; k < 16; ++k) s += double(rounded[i * 16 + k]) * as_float(z[k * 8 + j]);
      worst2 = std::max(worst2, std::fabs(out2[i * 8 + j] - s) / (1.0 + std::fabs(s)));
    }
  const bool ok = worst < 1e-5 && worst2 < 1e-5;  // products exact, one fp32 sum
  std::printf("%s %s: max rel err %.2e (X.Y), %.2e (P.Z)\n", ok ? "ok  " : "FAIL", name, worst, worst2);
  return ok ? 0 : 1;
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  int failures = 0;
  failures += check<__half>("f16 A=ldmatrix_x4, B=ldmatrix_x4 of (n,k)", 0, rng);
  failures += check<__half>("f16 A=ldmatrix_x4, B=ldmatrix_x4_trans of (k,n)", 1, rng);
  failures += check<__nv_bfloat16>("bf16 A=ldmatrix_x4, B=ldmatrix_x4 of (n,k)", 0, rng);
  failures += check<__nv_bfloat16>("bf16 A=ldmatrix_x4, B=ldmatrix_x4_trans of (k,n)", 1, rng);
  std::printf("check_mma: %d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}

// noise_adain_lrelu on CUDA, two kernel families chosen by x's layout.
//
// Planes contiguous (NCHW): one thread block per (n, c) plane. A plane of M <= kItems * kMaxThreads
// elements is read once into registers (kItems per thread): two-pass statistics from registers,
// then y written from registers. Larger planes (StyleGAN reaches 1024x1024) sweep the plane twice
// from global memory (the second pass mostly from L2): per-thread shifted sums in double (see "the
// forward's statistics where a thread cannot hold its values"), then a second pass to write y.
// (Copying planes of up to 64 KiB into shared memory first, to read global memory once, made the
// forward kernel at (8, 128, 128, 128) bf16 take 42 us on the H100 run of 2026-11-27 against 34 us
// for the two sweeps on the run before, and the backward 52 against 49 us.) The crossover (4096
// elements = 64x64) is where the register cache reaches 8 values per thread at 512 threads; it is a
// reasoned choice and has not been tuned on a GPU yet. Large planes too few for a block each to
// fill the GPU (under two per SM) are split into pixel ranges over several blocks instead
// (PlaneMajor, under "split planes"). Planes that are contiguous and 16-byte aligned in every
// tensor of the call (NCHW, every StyleGAN plane size) move in 16-byte vectors of kVec = 16 /
// sizeof(scalar_t) elements, thread t owning vectors t, t + blockDim, ...; other strides move
// element by element.
//
// Channels innermost (channels_last): lanes over 32 adjacent channels, so every warp access
// is contiguous, and planes split into pixel ranges over several blocks with partial sums
// merged by a second kernel, or one kernel where a plane is one range (ChannelMajor, under
// "split planes").
//
// Reductions are in a fixed order (warp shuffles, shared memory, per-range partials summed
// in order): the same inputs give bitwise the same outputs and gradients (no atomics). Half
// and bfloat16 are computed in float; offsets are 64-bit.
//
// STYLEGAN_OPS_EMULATE_CUDA compiles this file for the CPU (tests/cuda_emulation/); the CUDA
// runtime calls are in runtime.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "../noise_adain_lrelu.h"
#include "packed.h"
#include "rounding.h"
#include "runtime.h"
#include "sum_rows.h"

namespace stylegan_ops {
namespace {

constexpr int kItems = 8;
constexpr int kMaxThreads = 512;
constexpr int64_t kMaxCachedPlane = int64_t(kItems) * kMaxThreads;

// Where a per-plane kernel keeps its plane between its two passes.
enum class PlaneCache {
  kRegisters,  // M <= kMaxCachedPlane: kItems values per thread, read from global memory once
  kNone,       // larger planes: read from global memory in each pass
};
constexpr int kWarp = 32;

template <typename T>
__device__ T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block, returned to every thread. `shared` holds kMaxThreads / kWarp values.
template <typename T>
__device__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = warp_sum(lane < warps ? shared[lane] : T(0));
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const T total = shared[0];
  __syncthreads();  // shared may be reused right after
  return total;
}

struct Plane {  // one (n, c) plane of a tensor, H*W flattened with one stride
  int64_t base, hw_stride;
};

__device__ inline Plane plane_of(const PlaneView& v, int64_t n, int64_t c) {
  return {n * v.n_stride + c * v.c_stride, v.hw_stride};
}

// Elements [i, i + kVec) of a plane: one 16-byte access for kVec > 1 (the plane is then
// contiguous and aligned), else element i through the plane's stride.
template <int kVec, typename scalar_t, typename acc_t>
__device__ inline void load(const scalar_t* data, Plane p, int64_t i, acc_t (&out)[kVec]) {
  if constexpr (kVec == 1) {
    out[0] = acc_t(data[p.base + i * p.hw_stride]);
  } else {
    const Packed<scalar_t, kVec> packed = *reinterpret_cast<const Packed<scalar_t, kVec>*>(data + p.base + i);
#pragma unroll
    for (int e = 0; e < kVec; ++e) out[e] = acc_t(packed.v[e]);
  }
}

template <int kVec, typename scalar_t, typename acc_t>
__device__ inline void store(scalar_t* data, Plane p, int64_t i, const acc_t (&in)[kVec]) {
  if constexpr (kVec == 1) {
    data[p.base + i * p.hw_stride] = scalar_t(in[0]);
  } else {
    Packed<scalar_t, kVec> packed;
#pragma unroll
    for (int e = 0; e < kVec; ++e) packed.v[e] = scalar_t(in[e]);
    store_packed(data + p.base + i, packed);
  }
}

// The input v = x + a * noise of plane (n, c): where x's and noise's planes live, and a = noise_weight[c]
// (noise null: no noise, a = 0).
template <typename scalar_t>
struct NoisyPlane {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x;
  Plane xp;
  const scalar_t* noise;
  Plane np;
  acc_t a;
  __device__ NoisyPlane(const scalar_t* x_, PlaneView xv, const scalar_t* noise_, PlaneView nv,
                        const scalar_t* noise_weight, int64_t n, int64_t c)
      : x(x_), xp(plane_of(xv, n, c)), noise(noise_), np(plane_of(nv, n, 0)),
        a(noise_ != nullptr ? acc_t(noise_weight[c]) : acc_t(0)) {}
};

// v for elements [i, i + kVec) of the plane.
template <int kVec, typename scalar_t, typename acc_t>
__device__ inline void load_v(const NoisyPlane<scalar_t>& p, int64_t i, acc_t (&v)[kVec]) {
  load<kVec>(p.x, p.xp, i, v);
  if (p.noise != nullptr) {
    acc_t z[kVec];
    load<kVec>(p.noise, p.np, i, z);
#pragma unroll
    for (int e = 0; e < kVec; ++e) v[e] += p.a * z[e];
  }
}

template <typename acc_t>
__device__ inline acc_t leaky_relu(acc_t z, acc_t slope) {
  return z > acc_t(0) ? z : z * slope;
}

// 1 / sqrt(variance + eps), and 0 when both are 0: PyTorch's batch_norm (so instance_norm)
// normalises a constant plane to 0 then, not to 0 / 0.
template <typename acc_t>
__device__ inline acc_t inverse_std(acc_t variance, double eps) {
  return variance == acc_t(0) && eps == 0 ? acc_t(0) : acc_t(1) / sqrt(variance + acc_t(eps));
}

// ---- the forward's statistics where a thread cannot hold its values -----------------------------
// The swept per-plane forward and the range kernels sum d = v - K and d², K the plane's first
// element, in double (ShiftedSum): the variance is Σd²/M - (Σd/M)², whose cancellation grows as
// (K - mean)² / variance, up to M when K is an outlier (in float an outlier of 1000 among randn
// cost up to 6.1e-4 of relative error; DESIGN.md wants 1e-5). The shift keeps the cancellation
// below M (53 bits leave ~1e-10 at M = 2^20), where without it a common offset would be
// unbounded; the ranges' partials merge by plain addition, in range order. Values enter a chunk
// of kChunk at a time (add_chunk): FP64 work a chunk, not an element.
// The swept forward merged float Welford summaries before: a division a value (later a vector),
// and a running mean rounded to float, which left 1 / std 2.8e-5 off at an offset of 1e4 (6e-8
// now; emulated). Its kernel took 33 us at (8, 128, 128, 128) bf16 on the H100 and the H200
// alike, whose copy rates differ by 1.4x: bound by issue and latency, which its loop now shortens.
using ShiftedSum = double;
constexpr int kChunk = 8;

// Adds a chunk of values to the sums of d = v - K and d² (shift = K). In float, two passes over
// registers: the chunk's mean m (kN a power of two: an exact scaling of the sum, but the sum is
// rounded), the residual r = Σ(v - m) that this rounding leaves, and q = Σ(v - m)². Then in
// double, exact algebra for any m:
//   Σ(v - K) = kN (m - K) + r,    Σ(v - K)² = q + (m - K) (2 r + kN (m - K)).
// Without r, m's rounding (ε |m|: 1e-3 at an offset of 1e4) would enter Σd² times (m - K). The
// float parts are each as exact as float allows about the chunk's own mean, as a two-pass
// plane's are. FP64 work: 3 conversions and 6 operations a chunk, where summing each d in double
// took a conversion and 3 operations an element (Hopper runs FP64 at half the FP32 rate, a
// GeForce at 1/64; these passes are meant to be bound by memory).
template <int kRows, int kCols, typename acc_t>
__device__ void add_chunk(const acc_t (&v)[kRows][kCols], ShiftedSum shift, ShiftedSum& sum, ShiftedSum& squares) {
  constexpr int kN = kRows * kCols;
  static_assert((kN & (kN - 1)) == 0, "kN is a power of two");
  acc_t total = 0;
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
#pragma unroll
    for (int e = 0; e < kCols; ++e) total += v[i][e];
  }
  const acc_t mean = total * (acc_t(1) / acc_t(kN));
  acc_t residual = 0, m2 = 0;
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
#pragma unroll
    for (int e = 0; e < kCols; ++e) {
      const acc_t d = v[i][e] - mean;
      residual += d;
      m2 += d * d;
    }
  }
  const ShiftedSum offset = ShiftedSum(mean) - shift, r = ShiftedSum(residual);
  const ShiftedSum chunk_sum = ShiftedSum(kN) * offset + r;
  sum += chunk_sum;
  squares += ShiftedSum(m2) + offset * (chunk_sum + r);
}

// K, the plane's first v: the shift of the forward's statistics.
template <typename scalar_t>
__device__ ShiftedSum plane_shift(const NoisyPlane<scalar_t>& vp) {
  at::opmath_type<scalar_t> first[1];
  load_v<1>(vp, 0, first);
  return first[0];
}

// Adds Σd and Σd² over the plane's vectors first, first + step, ... below end to sum and squares,
// kChunk values (kLoads loads, each in flight before the chunk's sums) at a time.
template <int kVec, typename scalar_t>
__device__ void add_strided_vectors(const NoisyPlane<scalar_t>& vp, int64_t first, int64_t end, int64_t step,
                                    ShiftedSum shift, ShiftedSum& sum, ShiftedSum& squares) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kLoads = kVec < kChunk ? kChunk / kVec : 1;
  int64_t vi = first;
  for (; vi + (kLoads - 1) * step < end; vi += kLoads * step) {
    acc_t v[kLoads][kVec];
#pragma unroll
    for (int l = 0; l < kLoads; ++l) load_v<kVec>(vp, (vi + l * step) * kVec, v[l]);
    add_chunk(v, shift, sum, squares);
  }
  if constexpr (kLoads > 1) {
    for (; vi < end; vi += step) {  // fewer than kLoads vectors left: a chunk each
      acc_t v[1][kVec];
      load_v<kVec>(vp, vi * kVec, v[0]);
      add_chunk(v, shift, sum, squares);
    }
  }
}

// A plane's mean and 1 / std from its M values' Σd and Σd² about shift.
template <typename acc_t>
__device__ void shifted_statistics(ShiftedSum sum, ShiftedSum squares, ShiftedSum shift, int64_t M, double eps,
                                   acc_t& mean, acc_t& rstd) {
  const ShiftedSum mean_d = sum / ShiftedSum(M), variance = squares / ShiftedSum(M) - mean_d * mean_d;
  // Rounding can leave a tiny negative; an inf in the plane leaves inf - inf = NaN, kept as in eager.
  rstd = acc_t(inverse_std(variance < ShiftedSum(0) ? ShiftedSum(0) : variance, eps));
  mean = acc_t(shift + mean_d);
}

// One plane's backward (derivation: stylegan_ops/ops/noise_adain_lrelu.py), for the per-plane and
// the range kernels alike: its inputs and saved statistics, and the per-element terms of both passes.
template <typename scalar_t, int kVec>
struct PlaneGrad {
  using acc_t = at::opmath_type<scalar_t>;
  NoisyPlane<scalar_t> vp;
  const scalar_t* grad_y;
  Plane gyp;
  acc_t mean, rstd, gamma, beta, slope;

  __device__ PlaneGrad(const scalar_t* grad_y_, PlaneView gyv, const scalar_t* x, PlaneView xv, const scalar_t* noise,
                       PlaneView nv, const scalar_t* noise_weight, const scalar_t* style_scale,
                       const scalar_t* style_bias, const acc_t* mean_in, const acc_t* rstd_in, int64_t n, int64_t c,
                       int64_t plane, double negative_slope)
      : vp(x, xv, noise, nv, noise_weight, n, c), grad_y(grad_y_), gyp(plane_of(gyv, n, c)), mean(mean_in[plane]),
        rstd(rstd_in[plane]), gamma(acc_t(style_scale[plane])), beta(acc_t(style_bias[plane])),
        slope(acc_t(negative_slope)) {}

  // For elements [i, i + kVec): x̂ = (v - mean) rstd, and g = dy through the LeakyReLU of gamma x̂ + beta.
  __device__ void terms(int64_t i, acc_t (&xhat)[kVec], acc_t (&g)[kVec]) const {
    acc_t dy[kVec];
    load_v<kVec>(vp, i, xhat);
    load<kVec>(grad_y, gyp, i, dy);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      xhat[e] = (xhat[e] - mean) * rstd;
      g[e] = gamma * xhat[e] + beta > acc_t(0) ? dy[e] : dy[e] * slope;
    }
  }

  // Pass 1: adds these elements' g and g x̂ to Σg and Σg·x̂.
  __device__ static void accumulate(const acc_t (&xhat)[kVec], const acc_t (&g)[kVec], acc_t& sum_g,
                                    acc_t& sum_g_xhat) {
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      sum_g += g[e];
      sum_g_xhat += g[e] * xhat[e];
    }
  }

  // Pass 2: stores dv = gamma rstd (g - Σg/M - x̂ Σg·x̂/M) for elements [i, i + kVec) and returns
  // their Σ dv·ξ (0 without noise).
  __device__ acc_t write_dv(int64_t i, const acc_t (&xhat)[kVec], const acc_t (&g)[kVec], acc_t mean_g,
                            acc_t mean_g_xhat, scalar_t* grad_x, const Plane& gxp) const {
    acc_t dv[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e) dv[e] = gamma * rstd * (g[e] - mean_g - xhat[e] * mean_g_xhat);
    store<kVec>(grad_x, gxp, i, dv);
    acc_t dv_noise = 0;
    if (vp.noise != nullptr) {
      acc_t z[kVec];
      load<kVec>(vp.noise, vp.np, i, z);
#pragma unroll
      for (int e = 0; e < kVec; ++e) dv_noise += dv[e] * z[e];
    }
    return dv_noise;
  }
};

template <typename scalar_t, int kVec, PlaneCache kCache>
__global__ void __launch_bounds__(kMaxThreads)
    forward_kernel(const scalar_t* __restrict__ x, PlaneView xv, const scalar_t* __restrict__ noise, PlaneView nv,
                   const scalar_t* __restrict__ noise_weight, const scalar_t* __restrict__ style_scale,
                   const scalar_t* __restrict__ style_bias, scalar_t* __restrict__ y, PlaneView yv,
                   at::opmath_type<scalar_t>* __restrict__ mean_out, at::opmath_type<scalar_t>* __restrict__ rstd_out,
                   int64_t C, int64_t M, double eps, double negative_slope) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kVecsPerThread = kItems / kVec;
  const int64_t plane = blockIdx.x, n = plane / C, c = plane % C, vectors = M / kVec;
  const NoisyPlane<scalar_t> vp(x, xv, noise, nv, noise_weight, n, c);
  const Plane yp = plane_of(yv, n, c);
  const acc_t slope = acc_t(negative_slope);
  acc_t mean, rstd;
  if constexpr (kCache == PlaneCache::kRegisters) {
    __shared__ acc_t shared[kMaxThreads / kWarp];
    acc_t v[kVecsPerThread][kVec];
    acc_t sum = 0;
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      const int64_t vi = threadIdx.x + int64_t(k) * blockDim.x;
#pragma unroll
      for (int e = 0; e < kVec; ++e) v[k][e] = acc_t(0);
      if (vi < vectors) load_v<kVec>(vp, vi * kVec, v[k]);
#pragma unroll
      for (int e = 0; e < kVec; ++e) sum += v[k][e];
    }
    mean = block_sum(sum, shared) / acc_t(M);
    acc_t squares = 0;
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      const int64_t vi = threadIdx.x + int64_t(k) * blockDim.x;
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const acc_t d = v[k][e] - mean;
        squares += vi < vectors ? d * d : acc_t(0);
      }
    }
    rstd = inverse_std(block_sum(squares, shared) / acc_t(M), eps);
    const acc_t gamma = acc_t(style_scale[plane]) * rstd, beta = acc_t(style_bias[plane]);
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      const int64_t vi = threadIdx.x + int64_t(k) * blockDim.x;
      if (vi >= vectors) continue;
#pragma unroll
      for (int e = 0; e < kVec; ++e) v[k][e] = leaky_relu((v[k][e] - mean) * gamma + beta, slope);
      store<kVec>(y, yp, vi * kVec, v[k]);
    }
  } else {
    __shared__ ShiftedSum sums_shared[kMaxThreads / kWarp];
    const ShiftedSum shift = plane_shift(vp);
    ShiftedSum sum = 0, squares = 0;
    add_strided_vectors<kVec>(vp, threadIdx.x, vectors, blockDim.x, shift, sum, squares);
    sum = block_sum(sum, sums_shared);
    squares = block_sum(squares, sums_shared);
    shifted_statistics(sum, squares, shift, M, eps, mean, rstd);
    const acc_t gamma = acc_t(style_scale[plane]) * rstd, beta = acc_t(style_bias[plane]);
    for (int64_t vi = threadIdx.x; vi < vectors; vi += blockDim.x) {
      acc_t v[kVec];
      load_v<kVec>(vp, vi * kVec, v);
#pragma unroll
      for (int e = 0; e < kVec; ++e) v[e] = leaky_relu((v[e] - mean) * gamma + beta, slope);
      store<kVec>(y, yp, vi * kVec, v);
    }
  }
  if (threadIdx.x == 0) {
    mean_out[plane] = mean;
    rstd_out[plane] = rstd;
  }
}

// Backward for one plane (derivation: stylegan_ops/ops/noise_adain_lrelu.py):
// pass 1 reduces Σg and Σg·x̂, pass 2 writes dv and reduces Σdv·ξ.
template <typename scalar_t, int kVec, PlaneCache kCache>
__global__ void __launch_bounds__(kMaxThreads)
    backward_kernel(const scalar_t* __restrict__ grad_y, PlaneView gyv, const scalar_t* __restrict__ x, PlaneView xv,
                    const scalar_t* __restrict__ noise, PlaneView nv, const scalar_t* __restrict__ noise_weight,
                    const scalar_t* __restrict__ style_scale, const scalar_t* __restrict__ style_bias,
                    const at::opmath_type<scalar_t>* __restrict__ mean_in,
                    const at::opmath_type<scalar_t>* __restrict__ rstd_in, scalar_t* __restrict__ grad_x, PlaneView gxv,
                    at::opmath_type<scalar_t>* __restrict__ grad_a_per_plane, scalar_t* __restrict__ grad_scale,
                    scalar_t* __restrict__ grad_bias, int64_t C, int64_t M, double negative_slope) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kVecsPerThread = kItems / kVec;
  __shared__ acc_t shared[kWarp];
  const int64_t plane = blockIdx.x, n = plane / C, c = plane % C, vectors = M / kVec;
  const PlaneGrad<scalar_t, kVec> pg(grad_y, gyv, x, xv, noise, nv, noise_weight, style_scale, style_bias, mean_in,
                                     rstd_in, n, c, plane, negative_slope);
  const Plane gxp = plane_of(gxv, n, c);
  acc_t sum_g = 0, sum_g_xhat = 0, dv_noise = 0;
  if constexpr (kCache == PlaneCache::kRegisters) {
    acc_t xhat[kVecsPerThread][kVec], g[kVecsPerThread][kVec];
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      const int64_t vi = threadIdx.x + int64_t(k) * blockDim.x;
#pragma unroll
      for (int e = 0; e < kVec; ++e) xhat[k][e] = g[k][e] = acc_t(0);
      if (vi < vectors) pg.terms(vi * kVec, xhat[k], g[k]);
      pg.accumulate(xhat[k], g[k], sum_g, sum_g_xhat);
    }
    sum_g = block_sum(sum_g, shared);
    sum_g_xhat = block_sum(sum_g_xhat, shared);
    const acc_t mean_g = sum_g / acc_t(M), mean_g_xhat = sum_g_xhat / acc_t(M);
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      const int64_t vi = threadIdx.x + int64_t(k) * blockDim.x;
      if (vi < vectors) dv_noise += pg.write_dv(vi * kVec, xhat[k], g[k], mean_g, mean_g_xhat, grad_x, gxp);
    }
  } else {
    for (int64_t vi = threadIdx.x; vi < vectors; vi += blockDim.x) {
      acc_t xhat[kVec], g[kVec];
      pg.terms(vi * kVec, xhat, g);
      pg.accumulate(xhat, g, sum_g, sum_g_xhat);
    }
    sum_g = block_sum(sum_g, shared);
    sum_g_xhat = block_sum(sum_g_xhat, shared);
    const acc_t mean_g = sum_g / acc_t(M), mean_g_xhat = sum_g_xhat / acc_t(M);
    for (int64_t vi = threadIdx.x; vi < vectors; vi += blockDim.x) {
      acc_t xhat[kVec], g[kVec];
      pg.terms(vi * kVec, xhat, g);
      dv_noise += pg.write_dv(vi * kVec, xhat, g, mean_g, mean_g_xhat, grad_x, gxp);
    }
  }
  dv_noise = block_sum(dv_noise, shared);
  if (threadIdx.x == 0) {
    grad_a_per_plane[plane] = dv_noise;
    grad_scale[plane] = scalar_t(sum_g_xhat);
    grad_bias[plane] = scalar_t(sum_g);
  }
}

// ---- split planes: pixel ranges over several blocks ---------------------------------------------
// Two cases spread a plane's pixels over several thread blocks (blockIdx.z picks one of `splits`
// pixel ranges), each with its own thread mapping:
//  - ChannelMajor, channels innermost (channels_last): a warp reads one pixel of 32 adjacent
//    channels, which are contiguous; blockIdx.x picks a sample n and a block b of 32 channels, and
//    thread (warp w, lane l) owns channel 32 b + l of n and pixels w, w + 8, ... of its range.
//  - PlaneMajor, NCHW planes beyond the register cache when there are too few of them to fill
//    the GPU (StyleGAN's 1024x1024 planes have C = 32): a block's threads share plane blockIdx.x,
//    thread t owning vectors t, t + blockDim, ... of its range (16 bytes where planes allow).
// One kernel writes per-range partial sums, the next merges them in a fixed order
// (deterministic) and makes its output, so x (and dy) are read twice. Where a plane is one range
// (splits = 1) the second kernel makes the sums itself: one launch where there were two (the
// native generator is CPU-bound on the H100 runs, its launches most of a small level's cost).
// The forward's partials are shifted sums (ShiftedSum), all about the plane's first element.

struct Range {  // what one thread of a range kernel works on
  int64_t n, c, plane;
  bool active;               // c < C
  int64_t first, end, step;  // vectors first, first + step, ... below end
};

// [begin, end): the blockIdx.z-th of `splits` ranges of `count` vectors.
__device__ inline void split_range(int64_t count, int splits, int64_t& begin, int64_t& end) {
  const int64_t chunk = ceil_div(count, splits);
  begin = int64_t(blockIdx.z) * chunk;
  end = begin + chunk < count ? begin + chunk : count;
}

// Ranges per plane: about four blocks per SM, and no range under min_vectors.
int splits_for(const at::Tensor& x, int64_t blocks_per_range, int64_t vectors, int64_t min_vectors) {
  const int64_t target = 4 * int64_t(multiprocessor_count(x)), most = std::max<int64_t>(1, vectors / min_vectors);
  return int(std::clamp<int64_t>(ceil_div(target, blocks_per_range), 1, std::min<int64_t>(most, 1024)));
}

constexpr int kChannelWarps = 8;

struct ChannelMajor {
  static constexpr int kVec = 1, kThreads = kChannelWarps * kWarp;
  static int splits(const at::Tensor& x, int64_t N, int64_t C, int64_t M) {
    return splits_for(x, N * ceil_div(C, kWarp), M, 16 * kChannelWarps);
  }
  static dim3 grid(int64_t N, int64_t C, int splits) {  // N * channel blocks < 2^31: N * C < 2^31 is checked
    return dim3(unsigned(N * ceil_div(C, kWarp)), 1, unsigned(splits));
  }
  __device__ static Range range(int64_t C, int64_t M, int splits) {
    const int64_t channel_blocks = ceil_div(C, kWarp), n = blockIdx.x / channel_blocks;
    const int64_t c = (blockIdx.x % channel_blocks) * kWarp + threadIdx.x % kWarp;
    int64_t begin, end;
    split_range(M, splits, begin, end);
    return {n, c, n * C + c, c < C, begin + threadIdx.x / kWarp, end, kChannelWarps};
  }
  // Per lane (channel): the sum over the block's warps, in warp order, to every thread.
  template <typename T>
  __device__ static T reduce(T v, T* shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    T total = 0;
    for (int w = 0; w < kChannelWarps; ++w) total += shared[w * kWarp + threadIdx.x % kWarp];
    __syncthreads();
    return total;
  }
  __device__ static bool writer() { return threadIdx.x < kWarp; }
};

template <int kVectorWidth>
struct PlaneMajor {
  static constexpr int kVec = kVectorWidth, kThreads = kMaxThreads;
  static int splits(const at::Tensor& x, int64_t N, int64_t C, int64_t M) {
    return splits_for(x, N * C, M / kVec, kThreads);
  }
  static dim3 grid(int64_t N, int64_t C, int splits) { return dim3(unsigned(N * C), 1, unsigned(splits)); }
  __device__ static Range range(int64_t C, int64_t M, int splits) {
    const int64_t plane = blockIdx.x;
    int64_t begin, end;
    split_range(M / kVec, splits, begin, end);
    return {plane / C, plane % C, plane, true, begin + threadIdx.x, end, kThreads};
  }
  template <typename T>
  __device__ static T reduce(T v, T* shared) {
    return block_sum(v, shared);
  }
  __device__ static bool writer() { return threadIdx.x == 0; }
};

// Shared memory of the range kernels: enough for either mapping's reduce.
constexpr int kRangeShared = kChannelWarps * kWarp > kMaxThreads / kWarp ? kChannelWarps * kWarp : kMaxThreads / kWarp;

// Partial sums live in (splits, 2, N*C) buffers: a pair of sums per pixel range and plane.
// Reduces this block's pair and stores it.
template <typename Map, typename T>
__device__ void store_partial_pair(T first, T second, T* shared, T* partial, const Range& r, int64_t planes) {
  first = Map::reduce(first, shared);
  second = Map::reduce(second, shared);
  if (r.active && Map::writer()) {
    partial[(2 * int64_t(blockIdx.z)) * planes + r.plane] = first;
    partial[(2 * int64_t(blockIdx.z) + 1) * planes + r.plane] = second;
  }
}

// The pair of sums over the whole plane: the ranges' partials added in range order.
template <typename T>
__device__ void merge_partial_pair(const T* partial, const Range& r, int64_t planes, int splits, T& first, T& second) {
  first = second = T(0);
  for (int s = 0; s < splits; ++s) {
    first += partial[(2 * int64_t(s)) * planes + r.plane];
    second += partial[(2 * int64_t(s) + 1) * planes + r.plane];
  }
}

// This thread's Σd and Σd² over its pixels of the block's range (zero for an inactive thread).
template <typename scalar_t, typename Map>
__device__ void range_moments(const scalar_t* __restrict__ x, PlaneView xv, const scalar_t* __restrict__ noise,
                              PlaneView nv, const scalar_t* __restrict__ noise_weight, const Range& r,
                              ShiftedSum& sum, ShiftedSum& squares) {
  sum = squares = 0;
  if (!r.active) return;
  const NoisyPlane<scalar_t> vp(x, xv, noise, nv, noise_weight, r.n, r.c);
  add_strided_vectors<Map::kVec>(vp, r.first, r.end, r.step, plane_shift(vp), sum, squares);
}

// Forward pass 1: Σd and Σd² over each pixel range.
template <typename scalar_t, typename Map>
__global__ void __launch_bounds__(Map::kThreads)
    range_stats_kernel(const scalar_t* __restrict__ x, PlaneView xv, const scalar_t* __restrict__ noise, PlaneView nv,
                       const scalar_t* __restrict__ noise_weight, ShiftedSum* __restrict__ partial, int64_t C,
                       int64_t planes, int64_t M, int splits) {
  __shared__ ShiftedSum shared[kRangeShared];
  const Range r = Map::range(C, M, splits);
  ShiftedSum sum, squares;
  range_moments<scalar_t, Map>(x, xv, noise, nv, noise_weight, r, sum, squares);
  store_partial_pair<Map>(sum, squares, shared, partial, r, planes);
}

// Forward pass 2: merges pass 1's partials into mean and rstd, writes y. kOneRange: a plane is one
// range (splits = 1; the generator's 4x4 and 8x8 levels at batch 8 in channels_last), so the block
// sums it itself and the forward is one launch, not two; the sums are pass 1's, bit for bit.
template <typename scalar_t, typename Map, bool kOneRange>
__global__ void __launch_bounds__(Map::kThreads)
    range_normalize_kernel(const scalar_t* __restrict__ x, PlaneView xv, const scalar_t* __restrict__ noise,
                           PlaneView nv, const scalar_t* __restrict__ noise_weight,
                           const scalar_t* __restrict__ style_scale, const scalar_t* __restrict__ style_bias,
                           const ShiftedSum* __restrict__ partial, scalar_t* __restrict__ y, PlaneView yv,
                           at::opmath_type<scalar_t>* __restrict__ mean_out,
                           at::opmath_type<scalar_t>* __restrict__ rstd_out, int64_t C, int64_t planes, int64_t M,
                           int splits, double eps, double negative_slope) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kVec = Map::kVec;
  const Range r = Map::range(C, M, splits);
  ShiftedSum sum, squares;
  if constexpr (kOneRange) {
    __shared__ ShiftedSum shared[kRangeShared];
    range_moments<scalar_t, Map>(x, xv, noise, nv, noise_weight, r, sum, squares);
    sum = Map::reduce(sum, shared);
    squares = Map::reduce(squares, shared);
  }
  if (!r.active) return;  // no block-wide synchronisation below
  if constexpr (!kOneRange) merge_partial_pair(partial, r, planes, splits, sum, squares);
  const NoisyPlane<scalar_t> vp(x, xv, noise, nv, noise_weight, r.n, r.c);
  const Plane yp = plane_of(yv, r.n, r.c);
  const acc_t slope = acc_t(negative_slope);
  acc_t mean, rstd;  // y from v - mean, as the per-plane kernels and the backward (which reads this mean) make x̂
  shifted_statistics(sum, squares, plane_shift(vp), M, eps, mean, rstd);
  const acc_t gamma = acc_t(style_scale[r.plane]) * rstd, beta = acc_t(style_bias[r.plane]);
  acc_t v[kVec];
  for (int64_t vi = r.first; vi < r.end; vi += r.step) {
    load_v<kVec>(vp, vi * kVec, v);
#pragma unroll
    for (int e = 0; e < kVec; ++e) v[e] = leaky_relu((v[e] - mean) * gamma + beta, slope);
    store<kVec>(y, yp, vi * kVec, v);
  }
  if (blockIdx.z == 0 && Map::writer()) {
    mean_out[r.plane] = mean;
    rstd_out[r.plane] = rstd;
  }
}

// This thread's Σg and Σg·x̂ over its pixels of the block's range (zero for an inactive thread).
template <typename scalar_t, typename Map>
__device__ void range_grad_moments(const scalar_t* __restrict__ grad_y, PlaneView gyv, const scalar_t* __restrict__ x,
                                   PlaneView xv, const scalar_t* __restrict__ noise, PlaneView nv,
                                   const scalar_t* __restrict__ noise_weight, const scalar_t* __restrict__ style_scale,
                                   const scalar_t* __restrict__ style_bias,
                                   const at::opmath_type<scalar_t>* __restrict__ mean_in,
                                   const at::opmath_type<scalar_t>* __restrict__ rstd_in, const Range& r,
                                   double negative_slope, at::opmath_type<scalar_t>& sum_g,
                                   at::opmath_type<scalar_t>& sum_g_xhat) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kVec = Map::kVec;
  sum_g = sum_g_xhat = 0;
  if (!r.active) return;
  const PlaneGrad<scalar_t, kVec> pg(grad_y, gyv, x, xv, noise, nv, noise_weight, style_scale, style_bias, mean_in,
                                     rstd_in, r.n, r.c, r.plane, negative_slope);
  acc_t xhat[kVec], g[kVec];
  for (int64_t vi = r.first; vi < r.end; vi += r.step) {
    pg.terms(vi * kVec, xhat, g);
    pg.accumulate(xhat, g, sum_g, sum_g_xhat);
  }
}

// Backward pass 1: Σg and Σg·x̂ over each pixel range.
template <typename scalar_t, typename Map>
__global__ void __launch_bounds__(Map::kThreads)
    range_grad_stats_kernel(const scalar_t* __restrict__ grad_y, PlaneView gyv, const scalar_t* __restrict__ x,
                            PlaneView xv, const scalar_t* __restrict__ noise, PlaneView nv,
                            const scalar_t* __restrict__ noise_weight, const scalar_t* __restrict__ style_scale,
                            const scalar_t* __restrict__ style_bias,
                            const at::opmath_type<scalar_t>* __restrict__ mean_in,
                            const at::opmath_type<scalar_t>* __restrict__ rstd_in,
                            at::opmath_type<scalar_t>* __restrict__ partial, int64_t C, int64_t planes, int64_t M,
                            int splits, double negative_slope) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t shared[kRangeShared];
  const Range r = Map::range(C, M, splits);
  acc_t sum_g, sum_g_xhat;
  range_grad_moments<scalar_t, Map>(grad_y, gyv, x, xv, noise, nv, noise_weight, style_scale, style_bias, mean_in,
                                    rstd_in, r, negative_slope, sum_g, sum_g_xhat);
  store_partial_pair<Map>(sum_g, sum_g_xhat, shared, partial, r, planes);
}

// Backward pass 2: merges pass 1's partials, writes dv, and the partial (splits, N*C) of Σdv·ξ.
// kOneRange (splits = 1): the block sums its plane itself, as range_normalize_kernel's does.
template <typename scalar_t, typename Map, bool kOneRange>
__global__ void __launch_bounds__(Map::kThreads)
    range_grad_input_kernel(const scalar_t* __restrict__ grad_y, PlaneView gyv, const scalar_t* __restrict__ x,
                            PlaneView xv, const scalar_t* __restrict__ noise, PlaneView nv,
                            const scalar_t* __restrict__ noise_weight, const scalar_t* __restrict__ style_scale,
                            const scalar_t* __restrict__ style_bias,
                            const at::opmath_type<scalar_t>* __restrict__ mean_in,
                            const at::opmath_type<scalar_t>* __restrict__ rstd_in,
                            const at::opmath_type<scalar_t>* __restrict__ partial, scalar_t* __restrict__ grad_x,
                            PlaneView gxv, at::opmath_type<scalar_t>* __restrict__ noise_partial,
                            scalar_t* __restrict__ grad_scale, scalar_t* __restrict__ grad_bias, int64_t C,
                            int64_t planes, int64_t M, int splits, double negative_slope) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kVec = Map::kVec;
  __shared__ acc_t shared[kRangeShared];
  const Range r = Map::range(C, M, splits);
  acc_t sum_g = 0, sum_g_xhat = 0, dv_noise = 0;
  if constexpr (kOneRange) {
    range_grad_moments<scalar_t, Map>(grad_y, gyv, x, xv, noise, nv, noise_weight, style_scale, style_bias, mean_in,
                                      rstd_in, r, negative_slope, sum_g, sum_g_xhat);
    sum_g = Map::reduce(sum_g, shared);
    sum_g_xhat = Map::reduce(sum_g_xhat, shared);
  }
  if (r.active) {
    if constexpr (!kOneRange) merge_partial_pair(partial, r, planes, splits, sum_g, sum_g_xhat);
    const PlaneGrad<scalar_t, kVec> pg(grad_y, gyv, x, xv, noise, nv, noise_weight, style_scale, style_bias, mean_in,
                                       rstd_in, r.n, r.c, r.plane, negative_slope);
    const Plane gxp = plane_of(gxv, r.n, r.c);
    const acc_t mean_g = sum_g / acc_t(M), mean_g_xhat = sum_g_xhat / acc_t(M);
    acc_t xhat[kVec], g[kVec];
    for (int64_t vi = r.first; vi < r.end; vi += r.step) {
      pg.terms(vi * kVec, xhat, g);
      dv_noise += pg.write_dv(vi * kVec, xhat, g, mean_g, mean_g_xhat, grad_x, gxp);
    }
  }
  dv_noise = Map::reduce(dv_noise, shared);
  if (r.active && Map::writer()) {
    noise_partial[int64_t(blockIdx.z) * planes + r.plane] = dv_noise;
    if (blockIdx.z == 0) {
      grad_scale[r.plane] = scalar_t(sum_g_xhat);
      grad_bias[r.plane] = scalar_t(sum_g);
    }
  }
}

// ---- d noise: a sum across planes --------------------------------------------------------------
// dξ[n, p] = Σ_c a_c dx[n, c, p], made only when the noise requires grad (projecting an image into
// a fixed generator optimises its noise maps). The kernels above keep planes apart, so this one
// reads dx again, once, adding the products in float: ATen's (dx * a).sum(1) took two kernels and
// an x-sized temporary, and rounded every product to dx's dtype. A block covers kGradNoisePixels
// pixels of one sample with kGradNoiseWarps warps, a warp's loads 32 adjacent elements whatever the
// layout: pixels contiguous (NCHW), lane l takes pixel l and warp w channels w, w + 8, ..., the
// warps' sums then added in warp order (ChannelMajor::reduce, whose blocks are these); channels
// innermost (channels_last), warp w takes pixels w, w + 8, ... and lane l channels l, l + 32, ...,
// the lanes' sums added by warp_sum. Every sum's order is fixed: deterministic.
constexpr int kGradNoiseWarps = kChannelWarps, kGradNoisePixels = kWarp;

template <typename scalar_t, bool kChannelsInner>
__global__ void __launch_bounds__(kGradNoiseWarps * kWarp)
    grad_noise_kernel(const scalar_t* __restrict__ grad_x, PlaneView gxv, const scalar_t* __restrict__ noise_weight,
                      scalar_t* __restrict__ grad_noise, int64_t C, int64_t M, int64_t pixel_blocks) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t n = blockIdx.x / pixel_blocks, p0 = blockIdx.x % pixel_blocks * kGradNoisePixels;
  const scalar_t* const sample = grad_x + n * gxv.n_stride;
  const auto product = [&](int64_t c, int64_t p) {
    return acc_t(noise_weight[c]) * acc_t(sample[c * gxv.c_stride + p * gxv.hw_stride]);
  };
  if constexpr (kChannelsInner) {
    const int64_t p_end = std::min(p0 + kGradNoisePixels, M);
    for (int64_t p = p0 + warp; p < p_end; p += kGradNoiseWarps) {  // the same pixels for a warp's lanes
      acc_t sum = 0;
      for (int64_t c = lane; c < C; c += kWarp) sum += product(c, p);
      sum = warp_sum(sum);
      if (lane == 0) grad_noise[n * M + p] = scalar_t(sum);
    }
  } else {
    __shared__ acc_t shared[ChannelMajor::kThreads];
    const int64_t p = p0 + lane;
    acc_t sum = 0;
    if (p < M) {
      for (int64_t c = warp; c < C; c += kGradNoiseWarps) sum += product(c, p);
    }
    sum = ChannelMajor::reduce(sum, shared);
    if (warp == 0 && p < M) grad_noise[n * M + p] = scalar_t(sum);
  }
}

// dξ of grad_x as a contiguous (N, 1, H, W) tensor, or the op's empty stand-in when not asked for.
at::Tensor grad_noise_cuda(const at::Tensor& grad_x, const at::Tensor& noise_weight, bool compute) {
  if (!compute) return at::empty({0}, grad_x.options());
  const int64_t N = grad_x.size(0), C = grad_x.size(1), M = grad_x.size(2) * grad_x.size(3);
  at::Tensor grad_noise = at::empty({N, 1, grad_x.size(2), grad_x.size(3)}, grad_x.options());
  if (N * M == 0) return grad_noise;
  const int64_t pixel_blocks = ceil_div(M, kGradNoisePixels);
  TORCH_CHECK(N * pixel_blocks < (int64_t(1) << 31), "noise_adain_lrelu_backward: N*H*W = ", N * M,
              " is too many pixels for the noise gradient's grid");
  const at::Tensor a = noise_weight.contiguous();
  const PlaneView gxv = plane_view(grad_x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_x.scalar_type(), "noise_adain_lrelu_grad_noise", [&] {
    const auto launch = [&](auto channels_inner) {
      launch_kernel(grad_noise_kernel<scalar_t, decltype(channels_inner)::value>, dim3(unsigned(N * pixel_blocks)),
                    kGradNoiseWarps * kWarp, grad_x.const_data_ptr<scalar_t>(), gxv, a.const_data_ptr<scalar_t>(),
                    grad_noise.mutable_data_ptr<scalar_t>(), C, M, pixel_blocks);
    };
    if (channels_innermost(grad_x)) {
      launch(std::true_type{});
    } else {
      launch(std::false_type{});
    }
  });
  return grad_noise;
}

// Planes beyond the register cache, too few for a block each to fill the GPU: PlaneMajor ranges.
bool too_few_large_planes(const at::Tensor& x, int64_t planes, int64_t M) {
  return M > kMaxCachedPlane && planes < 2 * int64_t(multiprocessor_count(x));
}

// Threads per block: for a cached plane just enough warps to hold it kItems per thread.
int threads_for(int64_t M) {
  if (M > kMaxCachedPlane) return kMaxThreads;
  return int(std::max<int64_t>(kWarp, round_up(ceil_div(M, kItems), kWarp)));
}

// Calls launch(cache) with the per-plane kernels' PlaneCache for planes of M elements.
template <typename Launch>
void with_plane_cache(int64_t M, const Launch& launch) {
  if (M <= kMaxCachedPlane) {
    launch(std::integral_constant<PlaneCache, PlaneCache::kRegisters>());
  } else {
    launch(std::integral_constant<PlaneCache, PlaneCache::kNone>());
  }
}

// Whether every plane of the tensors (null: an absent noise) is contiguous and starts 16-byte
// aligned, so planes move in vectors of `vec` elements (M a multiple of vec).
bool planes_are_vectors(std::initializer_list<std::pair<const at::Tensor*, PlaneView>> tensors, int64_t M, int vec) {
  for (const auto& [t, v] : tensors) {
    if (t == nullptr) continue;
    const auto address = reinterpret_cast<uintptr_t>(t->const_data_ptr());
    if (M % vec != 0 || v.hw_stride != 1 || address % 16 != 0 || v.n_stride % vec != 0 ||
        (t->size(1) > 1 && v.c_stride % vec != 0)) {
      return false;
    }
  }
  return true;
}

// launch(std::integral_constant<int, kVec>()): the 16-byte vector width when `vectors`, else 1.
template <typename scalar_t, typename Launch>
void with_vector_width(bool vectors, const Launch& launch) {
  constexpr int kVec = 16 / sizeof(scalar_t);
  static_assert(kItems % kVec == 0, "a cached plane holds whole vectors");
  if (vectors) {
    launch(std::integral_constant<int, kVec>());
  } else {
    launch(std::integral_constant<int, 1>());
  }
}

// The kernels for x's layout and size: ChannelMajor ranges for channels_last, PlaneMajor ranges
// for a few large planes, else a block per plane. `split_planes(map)` launches the range kernels
// with a mapping, `per_plane(vec)` the per-plane kernels with a vector width.
template <typename scalar_t, typename SplitPlanes, typename PerPlane>
void dispatch_layout(const at::Tensor& x, int64_t planes, int64_t M, bool vectors, const SplitPlanes& split_planes,
                     const PerPlane& per_plane) {
  if (channels_innermost(x)) {
    split_planes(ChannelMajor());
  } else if (too_few_large_planes(x, planes, M)) {
    with_vector_width<scalar_t>(vectors, [&](auto vec) { split_planes(PlaneMajor<decltype(vec)::value>()); });
  } else {
    with_vector_width<scalar_t>(vectors, per_plane);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> noise_adain_lrelu_cuda(
    const at::Tensor& x_in, const std::optional<at::Tensor>& noise_in, const at::Tensor& noise_weight,
    const at::Tensor& style_scale, const at::Tensor& style_bias, double eps, double negative_slope) {
  check_noise_adain_lrelu_args(x_in, noise_in, noise_weight, style_scale, style_bias);
  const DeviceGuard guard(x_in.device());
  const at::Tensor x = with_collapsible_hw(x_in);
  const std::optional<at::Tensor> noise = with_collapsible_hw(noise_in);
  const int64_t N = x.size(0), C = x.size(1), M = x.size(2) * x.size(3);
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(output_memory_format(x_in)));
  const auto stats_options = x.options().dtype(stats_dtype(x.scalar_type()));
  at::Tensor mean = at::empty({N, C}, stats_options), rstd = at::empty({N, C}, stats_options);
  if (N * C == 0) return {y, mean, rstd};
  const at::Tensor a = noise_weight.contiguous(), scale = style_scale.contiguous(), bias = style_bias.contiguous();
  const PlaneView xv = plane_view(x), nv = noise ? plane_view(*noise) : PlaneView{0, 0, 0}, yv = plane_view(y);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "noise_adain_lrelu_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* x_ptr = x.const_data_ptr<scalar_t>();
    const scalar_t* noise_ptr = noise ? noise->const_data_ptr<scalar_t>() : nullptr;
    const scalar_t *a_ptr = a.const_data_ptr<scalar_t>(), *scale_ptr = scale.const_data_ptr<scalar_t>(),
                   *bias_ptr = bias.const_data_ptr<scalar_t>();
    scalar_t* y_ptr = y.mutable_data_ptr<scalar_t>();
    acc_t *mean_ptr = mean.mutable_data_ptr<acc_t>(), *rstd_ptr = rstd.mutable_data_ptr<acc_t>();
    const bool vectors =
        planes_are_vectors({{&x, xv}, {noise ? &*noise : nullptr, nv}, {&y, yv}}, M, 16 / sizeof(scalar_t));
    auto split_planes = [&](auto map) {
      using Map = decltype(map);
      const int splits = Map::splits(x, N, C, M);
      const dim3 grid = Map::grid(N, C, splits), block(Map::kThreads);
      const auto normalize = [&](auto kernel, const ShiftedSum* partial) {
        launch_kernel(kernel, grid, block, x_ptr, xv, noise_ptr, nv, a_ptr, scale_ptr, bias_ptr, partial, y_ptr, yv,
                      mean_ptr, rstd_ptr, C, N * C, M, splits, eps, negative_slope);
      };
      if (splits == 1) {
        normalize(range_normalize_kernel<scalar_t, Map, true>, nullptr);
        return;
      }
      const at::Tensor partial =
          at::empty({splits, 2, N, C}, x.options().dtype(c10::CppTypeToScalarType<ShiftedSum>::value));
      launch_kernel(range_stats_kernel<scalar_t, Map>, grid, block, x_ptr, xv, noise_ptr, nv, a_ptr,
                    partial.mutable_data_ptr<ShiftedSum>(), C, N * C, M, splits);
      normalize(range_normalize_kernel<scalar_t, Map, false>, partial.const_data_ptr<ShiftedSum>());
    };
    auto per_plane = [&](auto vec) {
      constexpr int kVec = decltype(vec)::value;
      with_plane_cache(M, [&](auto cache) {
        launch_kernel(forward_kernel<scalar_t, kVec, decltype(cache)::value>, dim3(static_cast<unsigned>(N * C)),
                      threads_for(M), x_ptr, xv, noise_ptr, nv, a_ptr, scale_ptr, bias_ptr,
                      y_ptr, yv, mean_ptr, rstd_ptr, C, M, eps, negative_slope);
      });
    };
    dispatch_layout<scalar_t>(x, N * C, M, vectors, split_planes, per_plane);
  });
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> noise_adain_lrelu_backward_cuda(
    const at::Tensor& grad_y_in, const at::Tensor& x_in, const std::optional<at::Tensor>& noise_in,
    const at::Tensor& noise_weight, const at::Tensor& style_scale, const at::Tensor& style_bias,
    const at::Tensor& mean, const at::Tensor& rstd, double negative_slope, bool compute_grad_noise) {
  check_noise_adain_lrelu_backward_args(grad_y_in, x_in, noise_in, noise_weight, style_scale, style_bias, mean, rstd,
                                        compute_grad_noise);
  const DeviceGuard guard(x_in.device());
  const at::Tensor x = with_collapsible_hw(x_in), grad_y = with_collapsible_hw(grad_y_in);
  const std::optional<at::Tensor> noise = with_collapsible_hw(noise_in);
  const int64_t N = x.size(0), C = x.size(1), M = x.size(2) * x.size(3);
  at::Tensor grad_x = at::empty(x.sizes(), x.options().memory_format(output_memory_format(x_in)));
  // d noise_weight's partial sums, (rows, C): a row per sample (a block per plane), or per pixel
  // range and sample (split planes), summed over the rows at the end in a fixed order (sum_rows):
  // deterministic.
  at::Tensor grad_a_rows, grad_a = at::empty({C}, x.options());
  at::Tensor grad_scale = at::empty({N, C}, x.options()), grad_bias = at::empty({N, C}, x.options());
  if (N * C == 0) {
    return {grad_x, grad_noise_cuda(grad_x, noise_weight, compute_grad_noise), grad_a.zero_(), grad_scale, grad_bias};
  }
  const at::Tensor a = noise_weight.contiguous(), scale = style_scale.contiguous(), bias = style_bias.contiguous();
  const at::Tensor mean_c = mean.contiguous(), rstd_c = rstd.contiguous();
  const PlaneView xv = plane_view(x), nv = noise ? plane_view(*noise) : PlaneView{0, 0, 0};
  const PlaneView gyv = plane_view(grad_y), gxv = plane_view(grad_x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "noise_adain_lrelu_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *gy_ptr = grad_y.const_data_ptr<scalar_t>(), *x_ptr = x.const_data_ptr<scalar_t>();
    const scalar_t* noise_ptr = noise ? noise->const_data_ptr<scalar_t>() : nullptr;
    const scalar_t *a_ptr = a.const_data_ptr<scalar_t>(), *scale_ptr = scale.const_data_ptr<scalar_t>(),
                   *bias_ptr = bias.const_data_ptr<scalar_t>();
    const acc_t *mean_ptr = mean_c.const_data_ptr<acc_t>(), *rstd_ptr = rstd_c.const_data_ptr<acc_t>();
    scalar_t *gx_ptr = grad_x.mutable_data_ptr<scalar_t>(), *gscale_ptr = grad_scale.mutable_data_ptr<scalar_t>(),
             *gbias_ptr = grad_bias.mutable_data_ptr<scalar_t>();
    const bool vectors = planes_are_vectors(
        {{&grad_y, gyv}, {&x, xv}, {noise ? &*noise : nullptr, nv}, {&grad_x, gxv}}, M, 16 / sizeof(scalar_t));
    auto split_planes = [&](auto map) {
      using Map = decltype(map);
      const int splits = Map::splits(x, N, C, M);
      const dim3 grid = Map::grid(N, C, splits), block(Map::kThreads);
      grad_a_rows = at::empty({splits * N, C}, mean.options());
      const auto grad_input = [&](auto kernel, const acc_t* partial) {
        launch_kernel(kernel, grid, block, gy_ptr, gyv, x_ptr, xv, noise_ptr, nv, a_ptr, scale_ptr, bias_ptr, mean_ptr,
                      rstd_ptr, partial, gx_ptr, gxv, grad_a_rows.mutable_data_ptr<acc_t>(), gscale_ptr, gbias_ptr, C,
                      N * C, M, splits, negative_slope);
      };
      if (splits == 1) {
        grad_input(range_grad_input_kernel<scalar_t, Map, true>, nullptr);
        return;
      }
      const at::Tensor partial = at::empty({splits, 2, N, C}, mean.options());
      launch_kernel(range_grad_stats_kernel<scalar_t, Map>, grid, block, gy_ptr, gyv, x_ptr, xv, noise_ptr, nv, a_ptr,
                    scale_ptr, bias_ptr, mean_ptr, rstd_ptr, partial.mutable_data_ptr<acc_t>(), C, N * C, M, splits,
                    negative_slope);
      grad_input(range_grad_input_kernel<scalar_t, Map, false>, partial.const_data_ptr<acc_t>());
    };
    auto per_plane = [&](auto vec) {
      constexpr int kVec = decltype(vec)::value;
      grad_a_rows = at::empty({N, C}, mean.options());
      with_plane_cache(M, [&](auto cache) {
        launch_kernel(backward_kernel<scalar_t, kVec, decltype(cache)::value>, dim3(static_cast<unsigned>(N * C)),
                      threads_for(M), gy_ptr, gyv, x_ptr, xv, noise_ptr, nv, a_ptr,
                      scale_ptr, bias_ptr, mean_ptr, rstd_ptr, gx_ptr, gxv,
                      grad_a_rows.mutable_data_ptr<acc_t>(), gscale_ptr, gbias_ptr, C, M, negative_slope);
      });
    };
    dispatch_layout<scalar_t>(x, N * C, M, vectors, split_planes, per_plane);
    sum_rows<scalar_t>(grad_a_rows.const_data_ptr<acc_t>(), grad_a.mutable_data_ptr<scalar_t>(), grad_a_rows.size(0),
                       C);
  });
  return {grad_x, grad_noise_cuda(grad_x, noise_weight, compute_grad_noise), grad_a, grad_scale, grad_bias};
}

}  // namespace

#ifndef STYLEGAN_OPS_EMULATE_CUDA
TORCH_LIBRARY_IMPL(stylegan_ops, CUDA, m) {
  m.impl("noise_adain_lrelu", &noise_adain_lrelu_cuda);
  m.impl("noise_adain_lrelu_backward", &noise_adain_lrelu_backward_cuda);
}
#endif

}  // namespace stylegan_ops

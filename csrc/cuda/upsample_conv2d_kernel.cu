// upsample_conv2d on CUDA: implicit GEMMs over phase grids, on tensor cores for float16 and
// bfloat16 (ldmatrix and mma.sync, float32 accumulation) and for float32 (3xTF32: exact to float32
// tolerance, whatever torch's TF32 flags; TensorCoreMma), on CUDA cores for float64 (exact). With
// Wf[a,b,t,u] the folded weights (2x2 taps per output phase: fold_taps below) and "x shifted by
// (di, dj)" meaning x[i + di, j + dj], zero outside:
//
//   forward  y[n, o, 2i+a, 2j+b] = bias[o] + Σ_{t,u} Σ_c Wf[a,b,t,u][o, c] · x[n, c] shifted by (a-1+t, b-1+u)
//   dx       dx[n, c, i, j]      = 4 Σ_{k,l} Σ_o W[o, c, k, l] · A[n, o, 2i+2-k, 2j+2-l]
//   dW       dW[o, c, k, l]      = 4 Σ_{n,i,j} x[n, c, i, j] · A[n, o, 2i+2-k, 2j+2-l]
//
// where A = avg_pool2d(dy, 2, stride=1, padding=1), (2H+1) x (2W+1), made by window_means_kernel:
// the upsampling's adjoint sums conv2d's input gradient over 2x2 blocks, and by linearity those
// sums move onto dy, so that pixel (i, j) meets tap (k, l) through the mean of dy's window at rows
// 2i+1-k, 2i+2-k and columns 2j+1-l, 2j+2-l: 9 products per pixel and channel pair in either
// gradient, where the phase form takes 16. A holds means, not sums, so that a 16-bit A overflows
// only where dy does; the 4 is applied in float. A's four phase grids A_ab[i, j] = A[2i+a, 2j+b]
// (phase 0 of H + 1 rows, phase 1 of H) are dx's source as x is the forward's: tap (k, l) reads
// phase (k mod 2, l mod 2) shifted by (1 if k = 0 else 0, 1 if l = 0 else 0).
//
// The forward and dx are one kernel, phase_conv_kernel: a thread block owns destination
// channels (32 in the forward, 64 in dx) of 8x8 tiles of low-resolution pixels (four in the
// forward for the 16-bit types, two otherwise and in dx) in every destination phase, stages the
// source tiles with a one-pixel halo (and the weight slabs: 16 folded ones, dx's 9 taps) in
// shared memory for BK source channels at a time, pipelined (the next BK channels, and in the
// forward the BK after them, load through cp.async while these are multiplied), and each
// (phase, tap) term is a GEMM on a shifted view of a staged tile. The forward thus computes all
// four output phases from one input tile and writes the interleaved 2x output directly; dx reads
// the four phases of A from one tile the same way; grids too small to fill the GPU (few pixels)
// split the source channels over blocks, whose float partials are then summed. dW is a
// reduction over pixels (grad_weight_kernel: the three taps of one filter column a block), split
// over blocks into float32 partials that are summed in a fixed order: deterministic, no atomics;
// its pixel tiles are pipelined likewise.
//
// phase_conv's fragments are 32 (channels) x 8 (pixels of one tile row), so an 8-pixel-wide tile
// row is one fragment column and shifted views are plain pointer offsets into the staged tile.
// Every tensor is addressed through its strides. The kernels stage their sources (the forward's
// x, dx's A, d weight's x and A) channels fastest, the layout of an implicit GEMM's K, a 16-byte
// vector per load where the channel counts are whole vectors: a source whose channels are not
// contiguous (NCHW) is copied to channels_last first (channels_contiguous). Outputs are written
// in the layout asked for, NCHW pixel-fastest.
//
// Where it stands (bf16 channels_last, 512 -> 512 channels on 32x32, forward / dx / d weight):
// 0.280 / 0.229 / 0.306 ms on the H200 run of 2026-11-28 (benchmarks/results/
// nvidia-h200-2026-11-28-profile.log) against cuDNN's 0.199 / 0.210 / 0.311 ms on the upsampled
// input, which ATen's upsampling takes another 0.164 ms to make. Nsight Compute there (-ncu.txt):
// no shared-memory bank conflicts; d weight in 2.91 waves, bound by L2 (83.8%); the forward keeps
// the tensor pipe 37.8% busy at 25% occupancy, dx runs at 12.5%. What is left is the GEMMs' own
// rate (mma.sync at that occupancy); Hopper's wgmma is the next step. Tile sizes were picked by
// reasoning about registers and shared memory, not searched on a GPU. float32's GEMMs, on the
// CUDA cores until after that run, issued 2577 (forward) and 4090 (d weight) SASS instructions a
// warp a stage in their main loops; as 3xTF32 1005 and 2603, 192 of them HMMA a stage
// (tests/sass_report.py): not yet timed. The measurements that led here, run by run, are in
// benchmarks/results/HISTORY.md ("The upsample_conv2d CUDA kernels, run by run").
//
// STYLEGAN_OPS_EMULATE_CUDA compiles this file for the CPU against tests/cuda_emulation/ (CUDA
// threads as CPU threads, ldmatrix and mma.sync emulated as the PTX ISA defines them, with their
// alignment and bank rules checked), so CI checks every index of these kernels without a GPU; the
// CUDA-runtime calls are in runtime.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <utility>

#include "../upsample_conv2d.h"
#include "packed.h"
#include "rounding.h"
#include "runtime.h"
#include "sum_rows.h"

#ifndef STYLEGAN_OPS_EMULATE_CUDA  // else cuda_emulation.h provides these
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline_primitives.h>
#endif

namespace stylegan_ops {
namespace {

// Phases: output pixel (2i + a, 2j + b) = Σ_{t,u} Wf[a,b,t,u] · x[i + a - 1 + t, j + b - 1 + u],
// with Wf[a,b] = A_a W A_bᵀ, A_0 = [[1,0,0],[0,1,1]], A_1 = [[1,1,0],[0,0,1]] (rows: the 2
// taps, columns: the 3 original taps). The Python twin is stylegan_ops/ops/upsample_conv2d.py.
//
// ---- the folding, per (o, c) pair: 3x3 taps -> 16 folded taps (a, b, t, u) ------------------------
// Along one axis, A_a applied to taps w[0..2]: phase 0 -> (w0, w1 + w2), phase 1 -> (w0 + w1, w2).
template <typename T>
__device__ inline void fold_axis(const T w[3], T folded[2][2]) {
  folded[0][0] = w[0];
  folded[0][1] = w[1] + w[2];
  folded[1][0] = w[0] + w[1];
  folded[1][1] = w[2];
}

// w[3k + l] (row k, column l) -> folded[8a + 4b + 2t + u]: rows folded first, then columns.
template <typename T>
__device__ inline void fold_taps(const T w[9], T folded[16]) {
  T rows[2][2][3];  // (a, t, l)
  for (int l = 0; l < 3; ++l) {
    const T column[3] = {w[l], w[3 + l], w[6 + l]};
    T f[2][2];
    fold_axis(column, f);
    for (int a = 0; a < 2; ++a)
      for (int t = 0; t < 2; ++t) rows[a][t][l] = f[a][t];
  }
  for (int a = 0; a < 2; ++a) {
    for (int t = 0; t < 2; ++t) {
      T f[2][2];
      fold_axis(rows[a][t], f);
      for (int b = 0; b < 2; ++b)
        for (int u = 0; u < 2; ++u) folded[8 * a + 4 * b + 2 * t + u] = f[b][u];
    }
  }
}

constexpr int kWarp = 32;
// The blocks of the elementwise kernels (the weights' slabs, d weight's sum over splits).
constexpr int kElementwiseThreads = 256;
// The CUDA type with the bits of an ATen scalar type, for the tensor cores and shared memory.
template <typename T>
struct Native {
  using type = T;
};
template <>
struct Native<at::Half> {
  using type = __half;
};
template <>
struct Native<at::BFloat16> {
  using type = __nv_bfloat16;
};

// Storage -> accumulation type (torch builds with __CUDA_NO_HALF_CONVERSIONS__: no implicit ones).
template <typename Acc, typename T>
__device__ inline Acc to_acc(T v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __half2float(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else {
    return static_cast<Acc>(v);
  }
}

// ---- shared-memory tiles: 16-byte chunk planes ------------------------------------------------
// Every operand tile the GEMM kernels stage is a set of rows (a weight row, a pixel) of 16-byte
// chunks of its contiguous dimension (channels), stored chunk-plane-major: chunk j of every row,
// then chunk j + 1, each plane one chunk longer than its rows. A fragment's 8x8 matrix is 8 rows
// of one chunk, 16 bytes apart: 128 consecutive bytes, one per bank group, whatever row it starts
// at (a shifted view of a halo tile starts anywhere), so every matrix load is one shared-memory
// wavefront. Rows of whole chunks, 32 or 160 bytes apart, made every matrix load two wavefronts
// (its rows r and r + 4 shared banks). The pad keeps the same row of consecutive planes on
// consecutive bank groups, so that a warp's 16-byte stores across planes (d weight stages 4
// pixels x 8 chunks a warp) are as few wavefronts as their bytes need.
template <typename T>
struct Planes {
  static constexpr int kVec = 16 / int(sizeof(T));  // elements per chunk
  T* p;                                           // element (0, 0)
  int plane;                                      // elements from one chunk plane to the next
  // Element c of row `row` (c counts along the chunks: chunk c / kVec).
  __device__ T* at(int row, int c) const { return p + (c / kVec) * plane + row * kVec + c % kVec; }
  // The tile whose element (0, 0) is this one's (row, c); c a whole chunk.
  __device__ Planes offset(int row, int c) const { return {at(row, c), plane}; }
  // A plane's elements for `rows` rows (with its pad chunk), and a tile's for `channels` of them.
  static constexpr int plane_elems(int rows) { return (rows + 1) * kVec; }
  static constexpr int tile_elems(int rows, int channels) { return channels / kVec * plane_elems(rows); }
};

// ---- warp-level C (M x N) += A (M x K) · B (K x N) -------------------------------------------
// A warp GEMM's shape and its operands' layouts as Planes: A row-major (kAColMajor false: element
// (m, k) at a.at(m, k)) or column-major (a.at(k, m)); B column-major (kBRowMajor false: b.at(n, k))
// or row-major (b.at(k, n)).
template <int kM, int kN, int kK, bool kAColMajor_, bool kBRowMajor_>
struct GemmShape {
  static constexpr int M = kM, N = kN, K = kK;
  static constexpr bool kAColMajor = kAColMajor_, kBRowMajor = kBRowMajor_;
};

// CUDA cores, exact in Acc: lane l owns row l % M of C and, of that row, the M * N / 32 columns
// from (l / M) * (M * N / 32) on. B is read from shared memory inside mma(), so load_b only
// records where it is. store() writes C row-major (leading dimension kRowLd = N) or column-major
// (kColLd = M), kStagedElems elements either way.
template <typename T, typename Acc, typename Shape>
struct CudaCoreMma {
  static constexpr int kCols = Shape::M * Shape::N / kWarp;
  static constexpr int kRowLd = Shape::N, kColLd = Shape::M, kStagedElems = Shape::M * Shape::N;
  struct FragA {
    Acc v[Shape::K];
  };
  using FragB = Planes<const T>;
  struct FragC {
    Acc v[kCols];
  };
  static __device__ int row() { return int(threadIdx.x % kWarp) % Shape::M; }
  static __device__ int first_col() { return int(threadIdx.x % kWarp) / Shape::M * kCols; }
  static __device__ void zero(FragC& c) {
#pragma unroll
    for (int n = 0; n < kCols; ++n) c.v[n] = Acc(0);
  }
  static __device__ void load_a(FragA& a, Planes<const T> tile) {
    const int m = row();
#pragma unroll
    for (int k = 0; k < Shape::K; ++k) a.v[k] = to_acc<Acc>(Shape::kAColMajor ? *tile.at(k, m) : *tile.at(m, k));
  }
  static __device__ void load_b(FragB& b, Planes<const T> tile) { b = tile; }
  static __device__ void mma(FragC& c, const FragA& a, const FragB& b) {
    const int n0 = first_col();
#pragma unroll
    for (int n = 0; n < kCols; ++n) {
#pragma unroll
      for (int k = 0; k < Shape::K; ++k) {
        c.v[n] += a.v[k] * to_acc<Acc>(Shape::kBRowMajor ? *b.at(k, n0 + n) : *b.at(n0 + n, k));
      }
    }
  }
  static __device__ void store(Acc* p, const FragC& c, bool col_major) {
    const int m = row(), n0 = first_col();
#pragma unroll
    for (int n = 0; n < kCols; ++n) (col_major ? p[(n0 + n) * kColLd + m] : p[m * kRowLd + n0 + n]) = c.v[n];
  }
};

// The tensor-core instructions, PTX as the ISA defines them (tests/cuda_emulation/ emulates the
// same names, fragments and all): ldmatrix (row r of 8x8 matrix j from lane 8j + r's address,
// row_of(8j + r): a function of the lane, so that the emulation reads every lane's rows without
// an exchange; register j of lane l gets row l / 4, elements 2 (l % 4), 2 (l % 4) + 1, or with
// kTrans that column), and mma_tiles, mma.sync m16n8k16 or, on float32 registers, m16n8k8 of TF32
// (float accumulation) on each m16n8 tile of a warp's C (one call, so that the emulation exchanges
// a warp's registers once for them all), and store_shared and load_shared, a lane's floats into
// and a word out of shared memory at an address that is a function of the lane (so that the
// emulation sees a warp's addresses and checks their banks, as ldmatrix's).
#if !defined(STYLEGAN_OPS_EMULATE_CUDA) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800)
template <int kCount, bool kTrans, typename RowOf>
__device__ inline void ldmatrix(unsigned (&r)[kCount], const RowOf& row_of) {
  const unsigned address = unsigned(__cvta_generic_to_shared(row_of(int(threadIdx.x % kWarp))));
  if constexpr (kCount == 4) {
    if constexpr (kTrans) {
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                   : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                   : "r"(address));
    } else {
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                   : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                   : "r"(address));
    }
  } else {
    static_assert(kCount == 2 && !kTrans, "the loads the kernels make");
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];" : "=r"(r[0]), "=r"(r[1]) : "r"(address));
  }
}

template <typename T>
__device__ inline void mma_m16n8k16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                    const float (&c)[4]) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %11, %12, %13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
  } else {
    static_assert(std::is_same_v<T, __half>, "a 16-bit type");
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %11, %12, %13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
  }
}

// TF32 operands: float32 registers of which the tensor cores read the sign, the exponent and the
// 10 high mantissa bits.
__device__ inline void mma_m16n8k8_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                        const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

// c[i][j] += a[i] b[j]: A's m16 tiles i by B's n8 tiles j (k16 of a 16-bit T, k8 of TF32 for float).
template <typename T, int kM, int kN>
__device__ inline void mma_tiles(float (&c)[kM][kN][4], const unsigned (&a)[kM][4], const unsigned (&b)[kN][2]) {
#pragma unroll
  for (int i = 0; i < kM; ++i)
#pragma unroll
    for (int j = 0; j < kN; ++j) {
      if constexpr (std::is_same_v<T, float>) {
        mma_m16n8k8_tf32(c[i][j], a[i], b[j], c[i][j]);
      } else {
        mma_m16n8k16<T>(c[i][j], a[i], b[j], c[i][j]);
      }
    }
}

// kCount floats (1, or 2 as one 8-byte access) of each lane into shared memory at address_of(lane).
template <int kCount, typename AddressOf>
__device__ inline void store_shared(const float (&v)[kCount], const AddressOf& address_of) {
  float* const to = address_of(int(threadIdx.x % kWarp));
  if constexpr (kCount == 2) {
    *reinterpret_cast<float2*>(to) = make_float2(v[0], v[1]);
  } else {
    static_assert(kCount == 1, "one or two floats");
    *to = v[0];
  }
}

// One 32-bit word of each lane from shared memory at address_of(lane).
template <typename AddressOf>
__device__ inline unsigned load_shared(const AddressOf& address_of) {
  return *reinterpret_cast<const unsigned*>(address_of(int(threadIdx.x % kWarp)));
}
#endif

// A float32 operand split for 3xTF32 (split_tf32): a = big + small exactly, big a with its 13 low
// mantissa bits cleared (a TF32 value), small the rest, |small| < 2^-10 |a|, of which the tensor
// cores read the TF32 part (less than 2^-10 of small lost). The TF32 products a_big b_big + a_big
// b_small + a_small b_big, accumulated in float, miss a_small b_small and the small parts' lost
// bits, each under 2^-20 of |a b|: exact to float32 tolerance where one TF32 product (up to 2^-9
// off) is not. big is truncated (a mask) where cvt.rna.tf32.f32 would round (an add and a compare
// more on sm_90, and a round past FLT_MAX to inf), and small left whole for the tensor cores to
// drop its low bits: converting both parts with cvt.rna.tf32.f32 took the forward's main loop 1646
// SASS instructions a stage and 255 registers with spills, this 1005 and 171. A non-finite a
// keeps its bits in big (inf, and NaN with its payload), and has small = 0 and big_finite = 0, so
// that the two cross products stay finite and a_big b_big alone carries inf and NaN as the plain
// product would (with small = a - big, an inf gave inf - inf = NaN, and a finite a times an
// infinite b_big in a cross product gave 0 · inf = NaN where a = big).
__device__ inline void split_tf32(unsigned a, unsigned& big, unsigned& big_finite, unsigned& small) {
  const bool finite = (a & 0x7f800000u) != 0x7f800000u;  // an exponent of all ones: ±inf or NaN
  const unsigned truncated = a & ~0x1fffu;
  big = finite ? truncated : a;
  big_finite = finite ? truncated : 0u;
  small = finite ? __float_as_uint(__uint_as_float(a) - __uint_as_float(truncated)) : 0u;  // exact
}

// Tensor cores (sm_80+, float32 accumulation): a warp's C is M/16 x N/8 m16n8kK tiles, K = 16 for
// float16/bfloat16 operands, K = 8 for float32 ones, multiplied as 3xTF32 (split_tf32). Fragments
// load by ldmatrix from Planes, a matrix a chunk of 8 rows (8 16-bit elements or 4 floats, 16
// bytes either way): A row-major as rows m (x4: m 0-7 and 8-15 of k's first chunk, then of its
// second: the mma's a0..a3), column-major transposed from rows k; B column-major as rows n (x2:
// k's two chunks: b0, b1), row-major transposed from rows k (x4: b0, b1 of n 0-7, then of n 8-15).
// ldmatrix transposes only 16-bit elements: transposed float32 operands (d weight's, both) load an
// element a load_shared instead (kWordLoads, below).
template <typename T, typename Shape>
struct TensorCoreMma {
  static constexpr bool kTf32x3 = std::is_same_v<T, float>;
  static constexpr bool kWordLoads = kTf32x3 && Shape::kAColMajor;
  static constexpr int kVec = Planes<T>::kVec;  // elements of a chunk: half a k-step
  static_assert(Shape::K == 2 * kVec && Shape::M % 16 == 0 && (Shape::N == 8 || (Shape::N == 16 && Shape::kBRowMajor)),
                "the fragment shapes the kernels use");
  // The word loads order k their own way (k_row below): both operands must load alike.
  static_assert(!kTf32x3 || Shape::kAColMajor == Shape::kBRowMajor, "float32: both operands transposed or neither");
  static constexpr int kMTiles = Shape::M / 16, kNTiles = Shape::N / 8;
  // The registers: the operand's (r), or for 3xTF32 the big parts (r), big where finite and the
  // small parts (split_tf32).
  template <int kTiles, int kRegs>
  struct Parts {
    unsigned r[kTiles][kRegs];
  };
  template <int kTiles, int kRegs>
  struct Tf32x3Parts {
    unsigned r[kTiles][kRegs], finite[kTiles][kRegs], small[kTiles][kRegs];
  };
  template <int kTiles, int kRegs>
  using Fragment = std::conditional_t<kTf32x3, Tf32x3Parts<kTiles, kRegs>, Parts<kTiles, kRegs>>;
  using FragA = Fragment<kMTiles, 4>;
  using FragB = Fragment<kNTiles, 2>;
  struct FragC {
    float v[kMTiles][kNTiles][4];
  };
  static __device__ void zero(FragC& c) {
#pragma unroll
    for (int i = 0; i < kMTiles; ++i)
#pragma unroll
      for (int j = 0; j < kNTiles; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) c.v[i][j][e] = 0.0f;
  }
  // The float32 registers loaded into f.r, split in place (16-bit ones stay as loaded).
  template <int kTiles, int kRegs>
  static __device__ void split(Tf32x3Parts<kTiles, kRegs>& f) {
#pragma unroll
    for (int i = 0; i < kTiles; ++i)
#pragma unroll
      for (int e = 0; e < kRegs; ++e) split_tf32(f.r[i][e], f.r[i][e], f.finite[i][e], f.small[i][e]);
  }
  template <int kTiles, int kRegs>
  static __device__ void split(Parts<kTiles, kRegs>&) {}
  // kWordLoads: lane l = 4g + t holds A's (m, k) = (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4)
  // (m16n8k8's a0..a3) and B's (k, n) = (t, g), (t + 4, g) (b0, b1), each operand's k along the
  // rows (pixels) of its tile, a row 4 words of a chunk plane. Read in order (k = t from row t),
  // lane (g + 4, t) would share a bank with lane (g, t + 1): channel g + 4 lies in the next chunk
  // plane, whose words start 4 banks further (a plane of 8j rows and its pad chunk: 4 words modulo
  // 32, as d weight's tiles are), as row t + 1's do. k is a sum's index, so both operands read
  // k = t from row 2t and k = t + 4 from row 2t + 1: lane l's word 8t + 4e + 4 (g / 4) + g % 4
  // (modulo 32) for row 2t + e, on 32 banks for each e.
  static __device__ int k_row(int l, int e) { return 2 * (l % 4) + e; }
  // Lane l = 8q + r addresses row r of matrix q, whose m (or n) half is q % 2 and k chunk q / 2 (B
  // row-major: k half q % 2, n half q / 2).
  static __device__ void load_a(FragA& a, Planes<const T> tile) {
#pragma unroll
    for (int i = 0; i < kMTiles; ++i) {
      if constexpr (kWordLoads) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          a.r[i][e] = load_shared([&](int l) { return tile.at(k_row(l, e / 2), 16 * i + l / 4 + e % 2 * 8); });
        }
      } else if constexpr (Shape::kAColMajor) {
        ldmatrix<4, true>(a.r[i], [&](int l) { return tile.at(l / 16 * 8 + l % 8, 16 * i + l / 8 % 2 * 8); });
      } else {
        ldmatrix<4, false>(a.r[i], [&](int l) { return tile.at(16 * i + l / 8 % 2 * 8 + l % 8, l / 16 * kVec); });
      }
    }
    split(a);
  }
  static __device__ void load_b(FragB& b, Planes<const T> tile) {
    if constexpr (kWordLoads) {
#pragma unroll
      for (int j = 0; j < kNTiles; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) b.r[j][e] = load_shared([&](int l) { return tile.at(k_row(l, e), 8 * j + l / 4); });
    } else if constexpr (Shape::kBRowMajor) {
      unsigned regs[4];
      ldmatrix<4, true>(regs, [&](int l) { return tile.at(l / 8 % 2 * 8 + l % 8, l / 16 * 8); });
#pragma unroll
      for (int e = 0; e < 4; ++e) b.r[e / 2][e % 2] = regs[e];
    } else {  // .x2 reads lanes 0-15's addresses (16-31 repeat them)
      ldmatrix<2, false>(b.r[0], [&](int l) { return tile.at(l % 8, l / 8 % 2 * kVec); });
    }
    split(b);
  }
  // 3xTF32: the two cross products, then the product of the big parts.
  static __device__ void mma(FragC& c, const FragA& a, const FragB& b) {
    if constexpr (kTf32x3) {
      mma_tiles<T>(c.v, a.small, b.finite);
      mma_tiles<T>(c.v, a.finite, b.small);
    }
    mma_tiles<T>(c.v, a.r, b.r);
  }
  // C staged at p, row-major (leading dimension kRowLd) or column-major (kColLd), kStagedElems
  // floats either way. Lane l = 4g + t holds rows g and g + 8, columns 2t and 2t + 1, of each
  // m16n8 tile, so a store of one register of every lane puts 8 rows' lanes 4 apart along a
  // column-major C's columns: with kColLd = M (a multiple of 32) the 4 lanes of a row shared a
  // bank, 4 wavefronts a store (Nsight Compute, nvidia-h100-2026-11-27d-ncu.txt: a 4.0-way
  // conflict on 74% of the forward's shared-store wavefronts). Column n starts 8 banks after
  // column n - 2 with kColLd = M + 4: the 32 lanes on 32 banks. Row-major, a lane's two columns
  // go as one 8-byte store, half a warp a wavefront: rows 8 banks apart (kRowLd 8 or 24 modulo
  // 32) put a half-warp's 4 rows on distinct banks.
  static constexpr int kColLd = Shape::M + 4, kRowLd = Shape::N % 16 == 8 ? Shape::N : Shape::N + 8;
  static constexpr int kStagedElems = std::max(Shape::M * kRowLd, Shape::N * kColLd);
  static_assert(kRowLd % 16 == 8, "the banks above (kColLd: M % 16 == 0, asserted above)");
  static __device__ void store(float* p, const FragC& c, bool col_major) {
    const auto g = [](int l) { return l / 4; };
    const auto t = [](int l) { return l % 4; };
#pragma unroll
    for (int i = 0; i < kMTiles; ++i)
#pragma unroll
      for (int j = 0; j < kNTiles; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {  // rows g, g + 8: registers 2h, 2h + 1
          const auto m = [&](int l) { return 16 * i + g(l) + 8 * h; };
          const auto n = [&](int l) { return 8 * j + 2 * t(l); };
          if (col_major) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              store_shared<1>({c.v[i][j][2 * h + e]}, [&](int l) { return p + (n(l) + e) * kColLd + m(l); });
            }
          } else {
            store_shared<2>({c.v[i][j][2 * h], c.v[i][j][2 * h + 1]}, [&](int l) { return p + m(l) * kRowLd + n(l); });
          }
        }
  }
};

// The warp GEMM for storage type T accumulating in Acc: tensor cores for the 16-bit types (k-step
// 16) and, as 3xTF32, for float32 (k-step 8): kTensorCoreType; CUDA cores for float64. The host
// pass, sm_80+ device passes and the CPU emulation see the tensor cores; older device targets (only
// built when TORCH_CUDA_ARCH_LIST names them) keep the CUDA-core path, at the tensor cores'
// residency (launch bounds, as the host sizes grids for them).
template <typename T>
constexpr bool kTensorCoreType = !std::is_same_v<T, double>;
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
constexpr bool kTensorCores = true;
#else
constexpr bool kTensorCores = false;
#endif
template <typename T, typename Acc, typename Shape>
using WarpMma = std::conditional_t<kTensorCores && kTensorCoreType<T>, TensorCoreMma<T, Shape>,
                                   CudaCoreMma<T, Acc, Shape>>;

// f(std::true_type{}) if b, else f(std::false_type{}): a block-uniform flag made a compile-time
// constant in f, which is instantiated for each value.
template <typename F>
__device__ inline void with_bool(bool b, const F& f) {
  if (b) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

// ---- pipelined stages ---------------------------------------------------------------------------
// Runs compute(buf, s) for the stages s = 0 .. count - 1, stage s in shared-memory buffer
// s % kStages, while the next kStages - 1 stages load into the other buffers: load(buf, s) starts
// the stage's asynchronous copies (cp.async; elements it stores directly are visible after the
// next barrier), committed here as one group. One barrier a stage: past it, stage s has landed
// for every thread, and every warp is done with stage s - 1, whose buffer the load issued next
// (stage s + kStages - 1) takes. With two barriers a stage (one after the compute, to free its
// buffer) the tensor cores drained twice a stage. Every thread of the block calls it; it returns
// with every copy landed and past a barrier, so the caller may reuse the buffers.
template <int kStages, typename Load, typename Compute>
__device__ inline void pipelined(int64_t count, const Load& load, const Compute& compute) {
  static_assert(kStages >= 2, "a stage loads while another is computed");
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < count) load(s, s);
    __pipeline_commit();  // empty past the last stage: every stage s is then group s, as waited for below
  }
  int buf = 0, next = kStages - 1;  // s % kStages and (s + kStages - 1) % kStages
  for (int64_t s = 0; s < count; ++s) {
    __pipeline_wait_prior(kStages - 2);  // groups 0 .. s have landed
    __syncthreads();
    if (s + kStages - 1 < count) load(next, s + kStages - 1);
    __pipeline_commit();
    compute(buf, s);
    buf = buf + 1 == kStages ? 0 : buf + 1;
    next = next + 1 == kStages ? 0 : next + 1;
  }
  __pipeline_wait_prior(0);  // only empty groups are left
  __syncthreads();
}

// ---- forward and dx: phase_conv_kernel -------------------------------------------------------
// A (N, C, H', W') tensor addressed through its strides, seen as `kPhases` phase grids of
// H x W low-resolution pixels: phase (a, b) of pixel (i, j) is element (kScale*i + a, kScale*j + b),
// with kScale = 2 for four phases and 1 for one.
struct Strides {
  int64_t n, c, h, w;
};

template <int kPhases>
__device__ inline int64_t in_sample_offset(const Strides& s, int64_t c, int i, int j, int phase) {
  constexpr int kScale = kPhases == 4 ? 2 : 1;
  return c * s.c + int64_t(kScale * i + (phase >> 1)) * s.h + int64_t(kScale * j + (phase & 1)) * s.w;
}

template <int kPhases>
__device__ inline int64_t phase_offset(const Strides& s, int64_t n, int64_t c, int i, int j, int phase) {
  return n * s.n + in_sample_offset<kPhases>(s, c, i, j, phase);
}

// A warp's taps, in column groups: the taps of one source phase and column shift, one tap or two
// whose rows are one apart. The upper tap reads tile rows h + 1 + di for its rows h, the lower one
// the same rows for its rows h - 1, so each source fragment of the group is loaded once for both.
struct ColumnGroup {
  int src_phase, di, dj, upper_slab, lower_slab;
};

template <int kDstPhases>
struct Taps;

// Forward: destination phase q = (a, b), its 2x2 folded taps (t, u) of x, slab (a, b, t, u) =
// 8a + 4b + 2t + u; a column group per u, t = 0 upper.
template <>
struct Taps<4> {
  static constexpr int kSlabs = 16, kGroups = 2;
  static constexpr bool paired(int) { return true; }
  // Shifts di in {-1, 0} and dj in {-1, 0, 1}: the warps read every pixel of the halo tile.
  static constexpr bool reads(int, int, int, int, int) { return true; }
  static __device__ ColumnGroup group(int q, int u) {
    const int a = q >> 1, b = q & 1;
    return {0, a - 1, b - 1 + u, 4 * q + u, 4 * q + 2 + u};
  }
};

// dx: the 9 taps (k, l) of the 3x3 filters on A's phases, slab 3k + l. Phase (0, 0) holds k, l in
// {0, 2}, phase (0, 1) k in {0, 2} and l = 1, phase (1, 0) k = 1 and l in {0, 2}, phase (1, 1)
// the centre; k = 2 is the upper tap of a pair, k = 0 its lower one.
template <>
struct Taps<1> {
  static constexpr int kSlabs = 9, kGroups = 6;
  static constexpr bool paired(int g) { return g < 3; }
  // Whether a warp reads pixel (row, col) of phase p's (tile_h + 2) x (tile_w + 2) halo tile: a
  // group reads halo rows h + 1 + di for its tile rows h, one more for a pair, columns 1 + dj on.
  // The shifts are 0 and 1, along an axis whose phase bit is 1 only 0 (k = 1, l = 1, unpaired):
  // row and column 0 are never read, nor are the last row of phases (1, b) and the last column
  // of phases (a, 1). Of a 10 x 10 tile's four planes, 289 of 400 pixels are read.
  static constexpr bool reads(int p, int row, int col, int tile_h, int tile_w) {
    return row >= 1 && col >= 1 && row <= tile_h + 1 - (p >> 1) && col <= tile_w + 1 - (p & 1);
  }
  static __device__ ColumnGroup group(int, int g) {
    switch (g) {
      case 0: return {0, 0, 0, 8, 2};    // (2, 2) and (0, 2)
      case 1: return {0, 0, 1, 6, 0};    // (2, 0) and (0, 0)
      case 2: return {1, 0, 0, 7, 1};    // (2, 1) and (0, 1)
      case 3: return {2, 0, 0, 5, -1};   // (1, 2)
      case 4: return {2, 0, 1, 3, -1};   // (1, 0)
      default: return {3, 0, 0, 4, -1};  // (1, 1)
    }
  }
};

// Tile shapes of phase_conv_kernel for storage type T: BK source channels per stage (16 for the
// 16-bit types: one mma k-step), so every stage is 32 bytes of each weight row. A block owns
// kTiles pixel tiles of 8x8 and kBM destination channels; its warps are (destination phase,
// channel half, pixel tile), each accumulating 32 channels x 64 pixels, all kTH rows of its tile,
// over all its phase's taps (Taps: the forward's 4, dx's 9).
// Per source channel of a stage a block loads kSlabs * kBM weights and kTiles halo tiles of its
// source phases: the more pixels share a weight stage, the less traffic from L2, which bounds
// these kernels (Triton's forward, at 64 multiply-adds per element loaded, moved 5 TB/s on the
// H100). The 16-bit forward runs 16 warps, one block per SM, on 32 channels of 4 tiles (144 per
// element; 58 with one tile of 64 channels); float32 (3xTF32: three registers an operand element
// of a fragment) and float64 (CUDA cores) need up to 255 registers and run 8 warps on 2 tiles.
// dx's four source phases make a tile the larger load: 4 warps on 64 channels of 2 tiles, of whose
// halo tiles only the 289 of 400 pixels that Taps<1>::reads are loaded (64 per element, each worth
// 16/9 of a phase-form one), take 86 KiB, two blocks per SM; every block stays within the 99 KiB a
// block may have on sm_86 and sm_89 (GeForce RTX 30 and 40).
template <typename T, int kSrcPhases, int kDstPhases>
struct PhaseConvTile {
  // Fragments of 32 channels x 8 pixels (one tile row); A the weights [m][k], B the tile [pixel][k].
  using Gemm = GemmShape<32, 8, 32 / int(sizeof(T)), /*kAColMajor=*/false, /*kBRowMajor=*/false>;
  static constexpr int kSlabs = Taps<kDstPhases>::kSlabs;
  static constexpr int kHalves = kDstPhases == 4 ? 1 : 2;  // channel fragments per block
  static constexpr int kTiles = kDstPhases == 4 && sizeof(T) == 2 ? 4 : 2;
  static constexpr int kWarps = kDstPhases * kHalves * kTiles;
  static constexpr int kThreads = kWarps * kWarp;
  static constexpr int kBlocksPerSM = kDstPhases == 4 ? 1 : 2;
  static constexpr int kBM = kHalves * Gemm::M;  // destination channels per block
  static constexpr int kTH = 8, kTW = Gemm::N;   // a low-resolution pixel tile
  static constexpr int kBK = Gemm::K;
  static constexpr int kChunks = kBK / Planes<T>::kVec;  // 16-byte chunks of a stage's channels: 2
  static constexpr int kHaloPixels = (kTH + 2) * (kTW + 2);
  // A stage's weights, Planes of rows [slab][m]; its source, Planes of rows [pixel tile][src
  // phase][halo row][halo col] (a tile's kTilePixels), kHaloPlanePixels in all.
  static constexpr int kWeightRows = kSlabs * kBM, kWeightPlane = Planes<T>::plane_elems(kWeightRows);
  static constexpr int kTilePixels = kSrcPhases * kHaloPixels, kHaloPlanePixels = kTiles * kTilePixels;
  static constexpr int kSourcePlane = Planes<T>::plane_elems(kHaloPlanePixels);
  static constexpr int kWeightElems = Planes<T>::tile_elems(kWeightRows, kBK);
  static constexpr int kStageElems =
      int(round_up(kWeightElems + Planes<T>::tile_elems(kHaloPlanePixels, kBK), 128 / int(sizeof(T))));
  // Stages in flight (pipelined): the forward, one block per SM, has the shared memory for a third,
  // so that a stage's loads have two stages' multiplies to land in; dx, two blocks per SM, has
  // two. Whatever T (kBK is 32 bytes), the stages take: forward 85.9 KiB (16-bit) or 67.1 KiB,
  // dx 86.3 KiB.
  static constexpr int kStages = kDstPhases == 4 ? 3 : 2;
  static constexpr size_t kSharedBytes = kStages * size_t(kStageElems) * sizeof(T);
  // Where each halo pixel of the block's source tiles starts (halo_offsets), in static shared
  // memory beside the stages: forward 3.1 KiB (16-bit) or 1.6 KiB, dx 6.3 KiB.
  static_assert(kSharedBytes + kHaloPlanePixels * sizeof(int64_t) <= 99 * 1024,
                "the most shared memory a block may have on sm_86 and sm_89");
};

// phase_conv_kernel's halo_offsets, per halo pixel of a block's source tiles (plane-major, as the
// stages hold them): the offset of its channel 0 in the source, or kHaloZero where the stage holds
// zeros: outside the source, past the last pixel tile, or read by no warp (Taps::reads; a zero fill
// reads nothing from memory, and skipping those pixels instead cost a branch a vector). Made once
// per block, so that a stage's source load is a table read, a sentinel test and an add a vector:
// computed per stage (the pixel's tile, row, column and phase from the vector's index, its bounds,
// its offset's 64-bit products), a vector took 115 SASS instructions in dx's load loop (12.5
// vectors a thread a stage) and 72 in the forward's (bf16, sm_90: tests/sass_report.py's cp.async
// loops).
constexpr int64_t kHaloZero = -1;

// Grid: x = kTiles consecutive pixel tiles of the (n, tile row, tile column) order, y = block of
// kBM destination channels, z = share of the source channels (split-K, for grids too small to
// fill the GPU: launch_phase_conv). With one share a block writes dst; with several each writes
// its float partial sum (bias in share 0's) to `partial`, laid out as dst with share s's samples
// at s * N, and the host sums the shares. `weights` is (kSlabs, M_pad, K_pad), slab-major
// (slab_weights: the forward's folded ones, dx's taps), zero-padded to whole blocks, so weight
// stages are whole 16-byte vectors without bounds checks.
template <typename scalar_t, int kSrcPhases, int kDstPhases>
__global__ void __launch_bounds__(PhaseConvTile<typename Native<scalar_t>::type, kSrcPhases, kDstPhases>::kThreads,
                                  PhaseConvTile<typename Native<scalar_t>::type, kSrcPhases, kDstPhases>::kBlocksPerSM)
    phase_conv_kernel(const scalar_t* __restrict__ src, Strides src_s, const scalar_t* __restrict__ weights,
                      const scalar_t* __restrict__ bias, scalar_t* __restrict__ dst, Strides dst_s,
                      at::opmath_type<scalar_t>* __restrict__ partial, int64_t partial_share_offset, int H, int W,
                      int src_rows, int src_cols, int64_t K, int64_t M, int64_t K_pad, int64_t M_pad, int64_t tiles,
                      int tiles_h, int tiles_w, bool src_vectors, bool dst_channels_inner, bool dst_vectors) {
  using T = typename Native<scalar_t>::type;
  using Tile = PhaseConvTile<T, kSrcPhases, kDstPhases>;
  using acc_t = at::opmath_type<scalar_t>;
  using Mma = WarpMma<T, acc_t, typename Tile::Gemm>;
  constexpr int kTiles = Tile::kTiles, kBM = Tile::kBM, kTH = Tile::kTH, kTW = Tile::kTW, kBK = Tile::kBK;
  constexpr int kHalves = Tile::kHalves, kWarps = Tile::kWarps, kThreads = Tile::kThreads;
  constexpr int kFragM = Tile::Gemm::M;
  // dx's source is A, the means of dy's 2x2 windows: its sums are 4 times that.
  constexpr float kSourceScale = kDstPhases == 1 ? 4.0f : 1.0f;
  constexpr int kWeightElems = Tile::kWeightElems, kWeightPlane = Tile::kWeightPlane;
  constexpr int kSourcePlane = Tile::kSourcePlane, kStageElems = Tile::kStageElems;
  constexpr int kVec = 16 / int(sizeof(T));  // elements per 16-byte vector
  // A warp's staged fragment in the epilogue's scratch (Mma::store), and 4 more: dx's two channel
  // halves, which a quarter-warp's 16-byte loads read together, then start on different banks.
  constexpr int kWarpScratch = Mma::kStagedElems + 4;
  static_assert(kWarps * kWarpScratch * sizeof(acc_t) <= Tile::kSharedBytes, "epilogue scratch");
  static_assert(kStageElems * sizeof(T) % 128 == 0, "stages 128-byte aligned");
  // Tile::kStages stages, each its weights then its source tiles; after the last, the epilogue's scratch.
  T* const smem = reinterpret_cast<T*>(dynamic_shared_memory());

  const int warp = threadIdx.x / kWarp;
  const int q = warp % kDstPhases;                    // destination phase of this warp
  const int half = warp / kDstPhases % kHalves;       // which kFragM of the block's channels
  const int sub = warp / (kDstPhases * kHalves);      // which of the block's pixel tiles
  // The block's pixel tiles. A tile count that is not a multiple of kTiles leaves the last block's
  // last tiles empty: i_end 0 puts all their rows outside the image, so they stage zeros and
  // write nothing. Kept in shared memory, read where used (the same word for every thread: a
  // broadcast): in registers, the tiles' coordinates stayed live through the main loop and made
  // the forward spill.
  struct PixelTile {
    int64_t src_sample, dst_sample;  // offsets of its sample n: n * src_s.n, n * dst_s.n
    int i0, j0, i_end;
  };
  const auto decode_tile = [&](int64_t tile) -> PixelTile {
    const int64_t n = tile / tiles_w / tiles_h;
    return {n * src_s.n, n * dst_s.n, int(tile / tiles_w % tiles_h) * kTH, int(tile % tiles_w) * kTW,
            tile < tiles ? H : 0};
  };
  __shared__ PixelTile pixel_tiles[kTiles];
  if (threadIdx.x < kTiles) pixel_tiles[threadIdx.x] = decode_tile(int64_t(blockIdx.x) * kTiles + threadIdx.x);
  __syncthreads();
  const int64_t m0 = int64_t(blockIdx.y) * kBM;

  // The source tiles are planes of halo pixels, [pixel tile][src phase]: plane p is phase
  // p % kSrcPhases of pixel tile p / kSrcPhases. Their pixels' offsets, or kHaloZero.
  constexpr int kHaloPlanePixels = Tile::kHaloPlanePixels, kScale = kSrcPhases == 4 ? 2 : 1;
  __shared__ int64_t halo_offsets[kHaloPlanePixels];
  for (int pixel = threadIdx.x; pixel < kHaloPlanePixels; pixel += kThreads) {
    const int plane = pixel / Tile::kHaloPixels, hp = pixel % Tile::kHaloPixels, phase = plane % kSrcPhases;
    const int row = hp / (kTW + 2), col = hp % (kTW + 2);
    const PixelTile tile = pixel_tiles[plane / kSrcPhases];
    const int i = tile.i0 - 1 + row, j = tile.j0 - 1 + col;
    const bool inside = tile.i_end > 0 && i >= 0 && kScale * i + (phase >> 1) < src_rows && j >= 0 &&
                        kScale * j + (phase & 1) < src_cols;
    halo_offsets[pixel] = inside && Taps<kDstPhases>::reads(phase, row, col, kTH, kTW)
                              ? tile.src_sample + in_sample_offset<kSrcPhases>(src_s, 0, i, j, phase)
                              : kHaloZero;
  }
  __syncthreads();

  // Starts loading stage s, the kBK channels from s * kBK, into buffer `buf`: the weights, and
  // the source tiles where 16-byte vectors allow (channel_vectors), as asynchronous copies; any
  // other source element by element, stored before this returns. Halo pixels outside the source
  // (src_rows x src_cols) or read by no warp (Taps::reads), and channels past K, are zeros.
  // Weights: kSlabs slabs x kBM rows x kBK, each row 32 contiguous bytes (two vectors) of `weights`.
  // Thread t copies vector t % 2 of rows t / 2, t / 2 + kThreads / 2, ...: the same half of the
  // same row m of every kWeightSlabStep-th slab, so its sources are one pointer and one stride,
  // set up once, and its destinations one chunk plane.
  constexpr int kWeightVectors = Tile::kWeightRows * Tile::kChunks, kWeightSlabStep = kThreads / 2 / kBM;
  static_assert(Tile::kChunks == 2 && kWeightVectors % kThreads == 0 && kThreads % (2 * kBM) == 0, "weight copies");
  const unsigned weight_row = threadIdx.x / 2, weight_chunk = threadIdx.x % 2;
  const scalar_t* const weight_from =
      weights + (int64_t(weight_row / kBM) * M_pad + m0 + weight_row % kBM) * K_pad + weight_chunk * kVec;
  const int64_t weight_slab_stride = kWeightSlabStep * M_pad * K_pad;
  auto load_stage = [&](int buf, int64_t s) {
    const int64_t k0 = s * kBK;
    T* const w_stage = smem + buf * kStageElems;
    const Planes<T> weight_tile{w_stage, kWeightPlane};
#pragma unroll
    for (int c = 0; c < kWeightVectors / kThreads; ++c) {
      __pipeline_memcpy_async(weight_tile.at(weight_row + c * kThreads / 2, weight_chunk * kVec),
                              weight_from + c * weight_slab_stride + k0, 16);
    }
    const Planes<T> source_tile{w_stage + kWeightElems, kSourcePlane};
    // A halo pixel's channel k < k_end lies at offset halo_offsets[pixel] + (k0 + k) * src_s.c;
    // the others (past K, in the last stage of a K that is no multiple of kBK) are zeros.
    const int k_end = int(std::min(K - k0, int64_t(kBK)));
    if (src_vectors) {  // channels contiguous (channel_vectors): src_s.c = 1
      // A thread copies the same kVec channels k of every kThreads / (kBK / kVec)-th halo pixel:
      // their source pointer is made once a stage, and a vector adds its pixel's offset.
      constexpr int kVecsPerPixel = kBK / kVec;
      static_assert(kThreads % kVecsPerPixel == 0, "a thread's vectors: fixed channels");
      const int k = threadIdx.x % kVecsPerPixel * kVec;
      const bool k_inside = k < k_end;
      const scalar_t* const src_at = src + (k0 + k);
      // A loop in the forward too (one or two passes): unrolled, nvcc makes a copy of its body per
      // vector in each of the three places pipelined loads a stage, the same instructions a vector.
      constexpr int kUnroll = kDstPhases == 4 ? 1 : 4;
#pragma unroll kUnroll
      for (int pixel = threadIdx.x / kVecsPerPixel; pixel < kHaloPlanePixels; pixel += kThreads / kVecsPerPixel) {
        const int64_t at = halo_offsets[pixel];
        const bool read = at != kHaloZero && k_inside;
        // A zero: zero-filled, nothing read (src itself stands in as a valid address).
        __pipeline_memcpy_async(source_tile.at(pixel, k), read ? src_at + at : src, 16, read ? 0 : 16);
      }
    } else {
      const int64_t stage = k0 * src_s.c;
      for (unsigned e = threadIdx.x; e < kHaloPlanePixels * kBK; e += kThreads) {
        const unsigned k = e % kBK, pixel = e / kBK;
        const int64_t at = halo_offsets[pixel];
        const bool read = at != kHaloZero && int(k) < k_end;
        *source_tile.at(pixel, k) = read ? reinterpret_cast<const T*>(src)[at + stage + k * src_s.c] : T{};  // T{}: 0.0
      }
    }
  };

  typename Mma::FragC acc[kTH];
#pragma unroll
  for (int r = 0; r < kTH; ++r) Mma::zero(acc[r]);

  // This block's share of the K_pad / kBK stages.
  const int shares = int(gridDim.z), share = int(blockIdx.z);
  const int64_t first_stage = K_pad / kBK * share / shares, end_stage = K_pad / kBK * (share + 1) / shares;
  const auto load_share_stage = [&](int buf, int64_t s) { load_stage(buf, first_stage + s); };
  pipelined<Tile::kStages>(end_stage - first_stage, load_share_stage, [&](int buf, int64_t) {
    const Planes<const T> weight_tile{smem + buf * kStageElems, kWeightPlane};
    const Planes<const T> source_tile =
        Planes<const T>{weight_tile.p + kWeightElems, kSourcePlane}.offset(sub * Tile::kTilePixels, 0);
#pragma unroll
    for (int g = 0; g < Taps<kDstPhases>::kGroups; ++g) {
      // A column group (Taps): the source rows h + 1 + di serve the upper tap's row h and the
      // lower tap's row h - 1, so a pair's kTH + 1 source fragments are loaded once for both.
      const bool paired = Taps<kDstPhases>::paired(g);  // a constant once the loop is unrolled
      const ColumnGroup taps = Taps<kDstPhases>::group(q, g);
      typename Mma::FragA a_upper, a_lower;
      Mma::load_a(a_upper, weight_tile.offset(taps.upper_slab * kBM + half * kFragM, 0));
      if (paired) Mma::load_a(a_lower, weight_tile.offset(taps.lower_slab * kBM + half * kFragM, 0));
#pragma unroll
      for (int h = 0; h < (paired ? kTH + 1 : kTH); ++h) {
        typename Mma::FragB b;
        Mma::load_b(b, source_tile.offset((taps.src_phase * (kTH + 2) + h + 1 + taps.di) * (kTW + 2) + 1 + taps.dj, 0));
        if (h < kTH) Mma::mma(acc[h], a_upper, b);
        if (paired && h > 0) Mma::mma(acc[h - 1], a_lower, b);
      }
    }
  });

  // Epilogue, a tile row at a time: every warp stages its 32 x 8 fragment of the row (the
  // stages are read: pipelined ended on a barrier), then the block writes the row's kBM
  // channels x 8 pixels of each destination phase and pixel tile, each its fragment's (times
  // kSourceScale) plus bias, in channel-fastest order for channels_last destinations and
  // pixel-fastest otherwise (the fragments staged in that order too, so consecutive threads read
  // consecutive words). dst_vectors (channels_last, whole aligned 16-byte vectors of channels,
  // one share): a thread writes kOutVec channels of a pixel with one store, and computes one
  // address for them.
  constexpr int kOutVec = 16 / int(sizeof(scalar_t)), kAccVec = 16 / int(sizeof(acc_t));
  static_assert(kFragM % kOutVec == 0 && kOutVec % kAccVec == 0, "a vector of channels within one fragment");
  static_assert(Mma::kColLd % kAccVec == 0 && kWarpScratch % kAccVec == 0, "16-byte aligned staged vectors");
  acc_t* const scratch = reinterpret_cast<acc_t*>(smem);
  const scalar_t* const share_bias = share == 0 ? bias : nullptr;  // the bias goes into share 0's partial
  // Where channel m (of the block) of pixel px in `phase` of pixel tile s lies in the staged
  // fragments: in the fragment of the warp of that phase, channel half and tile.
  const auto staged = [&](unsigned s, unsigned phase, unsigned m, unsigned px) {
    const unsigned at = dst_channels_inner ? px * Mma::kColLd + m % kFragM : m % kFragM * Mma::kRowLd + px;
    return scratch + (phase + kDstPhases * (m / kFragM + kHalves * s)) * kWarpScratch + at;
  };
  const auto value = [&](const acc_t* fragment, int64_t channel) {
    const acc_t sum = *fragment * acc_t(kSourceScale);
    return share_bias != nullptr ? sum + static_cast<acc_t>(share_bias[channel]) : sum;
  };
  // Row outputs a block writes: (pixel tile, phase, pixel, channel), channel (or pixel) fastest.
  constexpr unsigned kRowOutputs = kTiles * kDstPhases * kTW * kBM;
#pragma unroll
  for (int r = 0; r < kTH; ++r) {
    Mma::store(scratch + warp * kWarpScratch, acc[r], /*col_major=*/dst_channels_inner);
    __syncthreads();
    if (dst_vectors) {
      for (unsigned v = threadIdx.x; v < kRowOutputs / kOutVec; v += kThreads) {
        const unsigned m = v % (kBM / kOutVec) * kOutVec, px = v / (kBM / kOutVec) % kTW;
        const unsigned phase = v / (kBM / kOutVec * kTW) % kDstPhases, s = v / (kBM / kOutVec * kTW * kDstPhases);
        const PixelTile tile = pixel_tiles[s];
        const int i = tile.i0 + r, j = tile.j0 + int(px);
        if (i < tile.i_end && j < W && m0 + m < M) {
          // The vector's staged sums, read 16 bytes at a time: 8 lanes a wavefront, 2 pixels of 4
          // vectors in the forward (16-bit), their columns 36 words apart, or dx's 8 vectors of
          // one pixel, half of them kWarpScratch further: every bank once (scalar loads of the
          // forward's 8 floats, a warp's 8 pixels 36 words apart, hit 8 banks 4 times).
          const Packed<acc_t, kAccVec>* const fragment =
              reinterpret_cast<const Packed<acc_t, kAccVec>*>(staged(s, phase, m, px));
          Packed<acc_t, kAccVec> sums[kOutVec / kAccVec];
#pragma unroll
          for (int h = 0; h < kOutVec / kAccVec; ++h) sums[h] = fragment[h];
          Packed<scalar_t, kOutVec> out;
#pragma unroll
          for (int l = 0; l < kOutVec; ++l) {
            out.v[l] = static_cast<scalar_t>(value(&sums[l / kAccVec].v[l % kAccVec], m0 + m + l));
          }
          store_packed(dst + tile.dst_sample + in_sample_offset<kDstPhases>(dst_s, m0 + m, i, j, phase), out);
        }
      }
    } else {
      for (unsigned e = threadIdx.x; e < kRowOutputs; e += kThreads) {
        const unsigned m = dst_channels_inner ? e % kBM : e / kTW % kBM;  // channel in the block
        const unsigned px = dst_channels_inner ? e / kBM % kTW : e % kTW;
        const unsigned phase = e / (kBM * kTW) % kDstPhases, s = e / (kBM * kTW * kDstPhases);
        const PixelTile tile = pixel_tiles[s];
        const int i = tile.i0 + r, j = tile.j0 + int(px);
        if (i < tile.i_end && j < W && m0 + m < M) {
          const acc_t sum = value(staged(s, phase, m, px), m0 + m);
          const int64_t offset = tile.dst_sample + in_sample_offset<kDstPhases>(dst_s, m0 + m, i, j, phase);
          if (shares == 1) {
            dst[offset] = static_cast<scalar_t>(sum);
          } else {
            partial[share * partial_share_offset + offset] = sum;
          }
        }
      }
    }
    __syncthreads();
  }
}

// ---- dW: grad_weight_kernel --------------------------------------------------------------------
// dW[o, c, k, l] = 4 Σ_{n,i,j} x[n, c, i, j] · A[n, o, 2i+2-k, 2j+2-l]: tap (k, l) multiplies x
// with A's phase (k mod 2, l mod 2) shifted by (1 if k = 0, 1 if l = 0), as in dx.
// Block: 64 channels c of x x 64 channels o of A, one filter column l and its three taps k (a warp
// pair each, one warp per 32 channels c), over its share of the pixel tiles (kRows rows x 16
// columns; a tile row is one 16-pixel k-step in the 16-bit types, two 8-pixel ones in float32).
// C_k[c][o] += X[c][pixel] · A_k[pixel][o], both read from pixel-major tiles, [pixel][c] and
// [pixel][o]: channels contiguous, as channels_last stores them, so that 16-byte vectors of either
// go straight to shared memory through cp.async, pipelined (the next tile loads while this one is
// multiplied). A's tile is the block's column phase l mod 2, shifted by its column shift, in both
// row phases: phase 0's rows i0 .. i0 + kRows (tap 2 reads them from tile row r on, tap 0 from
// r + 1), phase 1's rows i0 .. i0 + kRows - 1 (tap 1). x's tile needs no halo: every shift is A's.
// Only pixels of x are summed, the zero padding skipped (as the CPU kernel and Triton's do, and
// eager's float32 oneDNN convolution), so a non-finite dy on the border meets no 0: A's tile is
// zero in the columns past x's last one (the column shift is the block's own), and tile rows past
// x's last one are skipped, a whole k-step (block-uniform): A's phase 0 row H is tap 0's for x's
// row H - 1 and would be tap 2's for row H.
// A warp's fragments are 16 x 16: in the 16-bit types one ldmatrix (x4) for each operand, two
// m16n8k16 products; in float32 (16 x 16 x 8) 4 and 4 load_shared, 2 x 3 m16n8k8 TF32 products.
// Per pixel a block loads its 64 channels of x and (2 kRows + 1) / kRows times its 64 of A (2.25
// in 16 bits): a pixel tile's three blocks load 9.75 elements per pixel and channel for its 9
// taps, where the phase form's four blocks (x with its halo, one phase of dy) loaded 10.75 for 16
// folded taps: 9/16 of the HMMA for 0.91 of the traffic.
// Writes float partials [split][tap 3k + l][c][o], the 4 applied.
template <typename T>
struct GradWeightTile {
  static constexpr int kTW = 16;  // pixels per tile row
  // k-steps of the tensor cores (16 16-bit elements, 8 floats); float64's CUDA cores take a row at once.
  static constexpr int kK = kTensorCoreType<T> ? 32 / int(sizeof(T)) : kTW;
  using Gemm = GemmShape<16, 16, kK, /*kAColMajor=*/true, /*kBRowMajor=*/true>;
  static constexpr int kKSteps = kTW / Gemm::K;  // a tile row's
  static constexpr int kBC = 64, kBO = 64;       // x channels, A channels per block
  static constexpr int kTaps = 3;                // a filter column's
  static constexpr int kWarps = 2 * kTaps, kThreads = kWarps * kWarp;
  static constexpr int kRows = 8 / int(sizeof(T));  // tile rows: about the same shared memory for every T
  static constexpr int kARows = 2 * kRows + 1;      // A's tile rows: phase 0's kRows + 1, phase 1's kRows
  // The tiles as Planes of rows (pixels) of 16-byte chunks of channels: x's rows [row][col], A's
  // [phase 0 rows, phase 1 rows][col]. (Rows of a pixel's 64 channels, padded to 160 bytes, put
  // a fragment load's rows r and r + 4 on the same banks.)
  static constexpr int kPixels = kRows * kTW, kAPixels = kARows * kTW;
  static constexpr int kXPlane = Planes<T>::plane_elems(kPixels), kAPlane = Planes<T>::plane_elems(kAPixels);
  static constexpr int kXElems = Planes<T>::tile_elems(kPixels, kBC), kAElems = Planes<T>::tile_elems(kAPixels, kBO);
  // A stage (x tile, then A's) rounded up to 128 bytes, 26.25 KiB in the 16-bit types, 28.5 in
  // float32, three of them in flight on the tensor cores (pipelined: 78.75 and 85.5 KiB, 157.5 and
  // 171 for the two blocks an SM holds); two in float64's CUDA-core path: 66 KiB.
  static constexpr int kStages = kTensorCoreType<T> ? 3 : 2;
  static constexpr int kStageElems = int(round_up(kXElems + kAElems, 128 / int(sizeof(T))));
  static constexpr size_t kSharedBytes = kStages * size_t(kStageElems) * sizeof(T);
  // Beside them, in static shared memory, the tiles' pixel offsets (x_pixel_offsets, a_pixel_offsets).
  static_assert(kSharedBytes + (kPixels + kAPixels) * sizeof(int64_t) <= 99 * 1024,
                "the most shared memory a block may have on sm_86 and sm_89");
  // 16-bit: two blocks per SM (12 warps), up to 168 registers a thread: nvcc takes 128 and spills
  // nothing (tests/test_cuda_resources.py). Three (18 warps) would cap it at 96 (16384 registers
  // per SM quarter over 5 warps), where it spilled 48 bytes, reloaded 15 times a stage, and their
  // stages would need 236 KiB of the H100's 228. float32 (3xTF32: three registers an operand
  // element) takes 142. float64's CUDA-core path (exactness, not speed) needs up to 255 registers:
  // one block.
  static constexpr int kBlocksPerSM = kTensorCoreType<T> ? 2 : 1;
};

template <typename scalar_t>
__global__ void __launch_bounds__(GradWeightTile<typename Native<scalar_t>::type>::kThreads,
                                  GradWeightTile<typename Native<scalar_t>::type>::kBlocksPerSM)
    grad_weight_kernel(const scalar_t* __restrict__ x, Strides x_s, const scalar_t* __restrict__ window_means,
                       Strides a_s, at::opmath_type<scalar_t>* __restrict__ partial, int H, int W, int64_t C_in,
                       int64_t C_out, int64_t tiles, int tiles_h, int tiles_w, int splits, bool x_vectors,
                       bool a_vectors) {
  using T = typename Native<scalar_t>::type;
  using Tile = GradWeightTile<T>;
  using Gemm = typename Tile::Gemm;
  using acc_t = at::opmath_type<scalar_t>;
  using Mma = WarpMma<T, acc_t, Gemm>;
  constexpr int kBC = Tile::kBC, kBO = Tile::kBO, kTW = Tile::kTW, kRows = Tile::kRows, kTaps = Tile::kTaps;
  constexpr int kThreads = Tile::kThreads, kPixels = Tile::kPixels, kAPixels = Tile::kAPixels;
  constexpr int kVec = 16 / int(sizeof(T));  // elements per 16-byte vector
  static_assert(kThreads % (kBC / kVec) == 0 && kThreads % (kBO / kVec) == 0, "a thread's vectors: fixed channels");
  constexpr int kCFrags = kBC / 2 / Gemm::M, kOFrags = kBO / Gemm::N;  // per warp: 32 channels c, all 64 o
  constexpr int kFragElems = Gemm::M * Gemm::N;
  static_assert(Tile::kWarps * Mma::kStagedElems * sizeof(acc_t) <= Tile::kStageElems * sizeof(T), "epilogue scratch");
  T* const smem = reinterpret_cast<T*>(dynamic_shared_memory());  // the stages; once read, the first is the epilogue's

  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int k = warp % kTaps, half = warp / kTaps;  // filter row k, which 32 of the 64 x channels
  const int l = blockIdx.z % kTaps, split = blockIdx.z / kTaps;
  const int col_phase = l % 2, dj = l == 0 ? 1 : 0;
  const int a_row0 = k == 0 ? 1 : k == 2 ? 0 : kRows + 1;  // tap k's A tile row for tile row 0
  const int64_t c0 = int64_t(blockIdx.x) * kBC, o0 = int64_t(blockIdx.y) * kBO;
  // Per stage buffer: how many of its tile's rows lie inside x (kRows, or fewer in a sample's last tile
  // row), written with the stage's loads, read by every warp after the barrier that publishes them.
  __shared__ int rows_inside[Tile::kStages];

  // A tile's pixels differ from tile to tile only in where the tile starts: each one's offset from
  // there, in x and in A (rows of both row phases at the block's column phase and shift; A tile
  // pixel p is in row phase 0 for the first kRows + 1 rows, then in phase 1), made once per block.
  // A stage adds one offset per tile, and a vector's load is a table read, three bounds and an
  // add (none of the bounds inside x: stage_tile below): computed whole per vector, a vector of x
  // took 76 SASS instructions in the load loop, one of A 84 (2.7 and 6 a thread a stage); 23 and
  // 28 with the tables, 10 inside x (bf16, sm_90: tests/sass_report.py).
  const auto a_row = [&](int p) {  // (row within the tile's phase, row phase) of A tile pixel p
    const int row = p / kTW, phase1 = row > kRows;
    return std::pair<int, int>{row - phase1 * (kRows + 1), phase1};
  };
  __shared__ int64_t x_pixel_offsets[kPixels], a_pixel_offsets[kAPixels];
  for (int p = threadIdx.x; p < kAPixels; p += kThreads) {
    if (p < kPixels) x_pixel_offsets[p] = phase_offset<1>(x_s, 0, 0, p / kTW, p % kTW, 0);
    const auto [i, row_phase] = a_row(p);
    a_pixel_offsets[p] = phase_offset<4>(a_s, 0, 0, i, p % kTW + dj, 2 * row_phase + col_phase);
  }
  __syncthreads();
  const int c_end = int(std::min<int64_t>(C_in - c0, kBC)), o_end = int(std::min<int64_t>(C_out - o0, kBO));

  // Starts loading pixel tile s into buffer `buf`: x's, and A's rows, each through cp.async in
  // 16-byte vectors of channels where it allows (channel_vectors), else element by element, stored
  // before this returns. Zeros past the channel counts, outside x's pixels, and past A's last row.
  auto load_tile = [&](int buf, int64_t s) {
    const int64_t tile = split + s * splits;
    const Planes<T> x_planes{smem + buf * Tile::kStageElems, Tile::kXPlane};
    const Planes<T> a_planes{x_planes.p + Tile::kXElems, Tile::kAPlane};
    const int64_t n = tile / (int64_t(tiles_w) * tiles_h);
    const int i0 = int(tile / tiles_w % tiles_h) * kRows, j0 = int(tile % tiles_w) * kTW;
    if (threadIdx.x == 0) rows_inside[buf] = H - i0;
    const int rows_left = H - i0, cols_left = W - j0;  // of x, from the tile's first pixel
    const int64_t x_tile = phase_offset<1>(x_s, n, c0, i0, j0, 0), a_tile = phase_offset<4>(a_s, n, o0, i0, j0, 0);
    // A tile of kRows whole rows and kTW whole columns, in a block of whole channel blocks, has
    // every pixel inside (its A rows too: 2 kRows <= 2 rows_left): the usual case, whose copies
    // then need neither bounds nor zero fill (one instantiation of the copies each).
    with_bool(rows_left >= kRows && cols_left >= kTW && c_end == kBC && o_end == kBO, [&](auto interior) {
      const auto x_inside = [&](int c, int p) {
        return interior || (p / kTW < rows_left && p % kTW < cols_left && c < c_end);
      };
      const auto a_inside = [&](int o, int p) {
        const auto [i, row_phase] = a_row(p);
        return interior || (2 * i + row_phase <= 2 * rows_left && p % kTW < cols_left && o < o_end);
      };
      // Copies the tile of `source` whose pixel p starts at tile + offsets[p] (its channel c
      // c * channel_stride further) into `stage`: `pixels` rows of `channels` channels; zeros
      // where !inside(c, p). Vectors: a thread copies the same channels of every
      // kThreads / (channels / kVec)-th pixel, so it makes their source pointer once a stage, and a
      // vector adds its pixel's offset. That offset is read for inside and outside pixels alike
      // (the table has every pixel of a tile): read in the select's inside arm, it became a branch
      // around the read.
      const auto stage_tile = [&](Planes<T> stage, const scalar_t* source, int64_t tile, const int64_t* offsets,
                                  int64_t channel_stride, bool vectors, int pixels, int channels,
                                  const auto& inside) {
        if (vectors) {  // channels contiguous (channel_vectors)
          const int c = threadIdx.x % (channels / kVec) * kVec;
          const scalar_t* const at = source + (tile + c);
          for (int p = threadIdx.x / (channels / kVec); p < pixels; p += kThreads / (channels / kVec)) {
            const bool read = inside(c, p);
            const scalar_t* const from = at + offsets[p];
            // Outside: zero-filled, nothing read (source itself stands in as a valid address).
            __pipeline_memcpy_async(stage.at(p, c), read ? from : source, 16, read ? 0 : 16);
          }
        } else {
          for (unsigned e = threadIdx.x; e < unsigned(pixels * channels); e += kThreads) {
            const int c = e % unsigned(channels), p = e / unsigned(channels);
            *stage.at(p, c) = inside(c, p)
                ? reinterpret_cast<const T*>(source)[tile + offsets[p] + c * channel_stride] : T{};  // T{}: 0.0
          }
        }
      };
      stage_tile(x_planes, x, x_tile, x_pixel_offsets, x_s.c, x_vectors, kPixels, kBC, x_inside);
      stage_tile(a_planes, window_means, a_tile, a_pixel_offsets, a_s.c, a_vectors, kAPixels, kBO, a_inside);
    });
  };

  typename Mma::FragC acc[kCFrags][kOFrags];
#pragma unroll
  for (int m = 0; m < kCFrags; ++m) {
#pragma unroll
    for (int f = 0; f < kOFrags; ++f) Mma::zero(acc[m][f]);
  }

  // This block's tiles: split, split + splits, ...
  pipelined<Tile::kStages>(ceil_div(tiles - split, splits), load_tile, [&](int buf, int64_t) {
    const Planes<const T> x_planes{smem + buf * Tile::kStageElems, Tile::kXPlane};
    const Planes<const T> a_planes{x_planes.p + Tile::kXElems, Tile::kAPlane};
    const int rows = rows_inside[buf];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r >= rows) break;
#pragma unroll
      for (int step = 0; step < Tile::kKSteps; ++step) {
        const int k0 = step * Gemm::K;  // the k-step's first pixel in the tile row
        typename Mma::FragA fa[kCFrags];
#pragma unroll
        for (int m = 0; m < kCFrags; ++m) {
          Mma::load_a(fa[m], x_planes.offset(r * kTW + k0, (half * kCFrags + m) * Gemm::M));
        }
#pragma unroll
        for (int f = 0; f < kOFrags; ++f) {
          typename Mma::FragB fb;
          Mma::load_b(fb, a_planes.offset((a_row0 + r) * kTW + k0, f * Gemm::N));
#pragma unroll
          for (int m = 0; m < kCFrags; ++m) Mma::mma(acc[m][f], fa[m], fb);
        }
      }
    }
  });

  // A warp's fragment, staged row-major (Mma::kRowLd: on the tensor cores its stores without bank
  // conflicts, and the loads below, two rows of 16 words 24 apart, on 8 banks twice), goes out a
  // row of 16 o at a time.
  acc_t* scratch = reinterpret_cast<acc_t*>(smem) + warp * Mma::kStagedElems;  // the stages are read
  acc_t* out = partial + (int64_t(split) * 9 + 3 * k + l) * C_in * C_out;
#pragma unroll
  for (int m = 0; m < kCFrags; ++m) {
#pragma unroll
    for (int f = 0; f < kOFrags; ++f) {
      Mma::store(scratch, acc[m][f], /*col_major=*/false);
      __syncwarp();
      for (int e = lane; e < kFragElems; e += kWarp) {
        const int64_t c = c0 + (half * kCFrags + m) * Gemm::M + e / Gemm::N, o = o0 + f * Gemm::N + e % Gemm::N;
        if (c < C_in && o < C_out) {
          out[c * C_out + o] = acc_t(4) * scratch[e / Gemm::N * Mma::kRowLd + e % Gemm::N];  // A's means: a quarter
        }
      }
      __syncwarp();
    }
  }
}

// ---- host --------------------------------------------------------------------------------------
Strides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

// Whether t's channels can be staged (or written) in 16-byte vectors: channels contiguous
// (channels_last), the data 16-byte aligned, and the channel count and every other stride whole
// vectors, so a vector never straddles a pixel or the end of the channels.
bool channel_vectors(const at::Tensor& t) {
  const int64_t vec = 16 / int64_t(t.element_size());
  const auto address = reinterpret_cast<uintptr_t>(t.const_data_ptr());
  return t.stride(1) == 1 && t.size(1) % vec == 0 && address % 16 == 0 && t.stride(0) % vec == 0 &&
         t.stride(2) % vec == 0 && t.stride(3) % vec == 0;
}

// A kernel source as staged, channels fastest: t itself where its channels are contiguous, else a
// channels_last copy. Staging NCHW in place (pixels fastest, an element a load, into a
// channel-fastest tile) made the H100 run's bf16 NCHW calls at (8, 512, 512, 32, 32) 2.2x
// (forward) and 4.5x (forward+backward) slower than channels_last ones
// (nvidia-h100-2026-11-27-layouts.log); the copy moves x or dy once.
at::Tensor channels_contiguous(const at::Tensor& t) {
  return t.stride(1) == 1 ? t : t.contiguous(at::MemoryFormat::ChannelsLast);
}

// The weights of phase_conv_kernel, slab-major and zero-padded to whole blocks: the forward's 16
// folded slabs (a, b, t, u) of (o, c) matrices, dx's 9 taps (k, l) as (c, o) matrices
// W[:, :, k, l]ᵀ. A thread per padded entry of a slab reads its filter pair's 9 taps through the
// weight's strides (the weight of a model moved to channels_last is read where it lies: a
// contiguous copy cost a kernel and an allocation a call), folds them for the forward in the
// accumulation type (fold_taps: sums, so an infinite tap stays infinite) and writes its entry of
// every slab; consecutive threads write consecutive columns.
template <typename scalar_t, int kDstPhases>
__global__ void __launch_bounds__(kElementwiseThreads)
    slabs_kernel(const scalar_t* __restrict__ weight, Strides w_s, scalar_t* __restrict__ slabs, int64_t C_out,
                 int64_t C_in, int64_t rows_pad, int64_t cols_pad) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kSlabs = Taps<kDstPhases>::kSlabs;
  const int64_t entry = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, slab_size = rows_pad * cols_pad;
  if (entry >= slab_size) return;
  const int64_t row = entry / cols_pad, col = entry % cols_pad;
  const int64_t o = kDstPhases == 4 ? row : col, c = kDstPhases == 4 ? col : row;
  acc_t taps[9] = {};
  if (o < C_out && c < C_in) {
    const scalar_t* filter = weight + o * w_s.n + c * w_s.c;
    for (int k = 0; k < 9; ++k) taps[k] = static_cast<acc_t>(filter[k / 3 * w_s.h + k % 3 * w_s.w]);
  }
  acc_t folded[16];
  if constexpr (kDstPhases == 4) fold_taps(taps, folded);
  const acc_t* const values = kDstPhases == 4 ? folded : taps;
  for (int slab = 0; slab < kSlabs; ++slab) slabs[slab * slab_size + entry] = static_cast<scalar_t>(values[slab]);
}

// slabs_kernel's (kSlabs, rows, columns) weights, rows padded to row_block and columns to col_block.
template <int kDstPhases>
at::Tensor slab_weights(const at::Tensor& weight, int64_t row_block, int64_t col_block) {
  const int64_t C_out = weight.size(0), C_in = weight.size(1);
  const int64_t rows_pad = round_up(kDstPhases == 4 ? C_out : C_in, row_block);
  const int64_t cols_pad = round_up(kDstPhases == 4 ? C_in : C_out, col_block);
  at::Tensor slabs = at::empty({Taps<kDstPhases>::kSlabs, rows_pad, cols_pad}, weight.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(), "upsample_conv2d_slabs", [&] {
    launch_kernel(slabs_kernel<scalar_t, kDstPhases>,
                  dim3(unsigned(ceil_div(rows_pad * cols_pad, kElementwiseThreads))), kElementwiseThreads,
                  weight.const_data_ptr<scalar_t>(), strides_of(weight), slabs.mutable_data_ptr<scalar_t>(), C_out,
                  C_in, rows_pad, cols_pad);
  });
  return slabs;
}

// d weight from grad_weight_kernel's partials [split][tap][c][o]: a block sums a tile of tile_c x
// kTile (c, o) pairs over the splits, in split order (deterministic), for all 9 taps, into shared
// memory, and writes the tile in the weight's layout (in another, autograd would copy d weight
// into the parameter's after every backward): per o, its tile_c channels' taps are 9 tile_c
// consecutive elements (o, c, tap), or 9 runs of tile_c channels (o, tap, c) in channels_last.
// Reads (along o) and writes are both coalesced; a thread per pair writing its 9 taps, a pair's
// run 9 C_in elements from its neighbour's, took 0.052 ms at 512 -> 512 channels on the H100 run
// (nvidia-h100-2026-11-26-profile.log), a third of eager's whole forward and backward at the 8x8
// level. Summing one (tap, c) row at a time, it then took 0.035 ms there for 24 MB of traffic (2
// splits; nvidia-h100-2026-11-27b-profile.log): its 256 blocks, about two an SM, kept one load in
// flight a thread; a thread now sums kRowsAtOnce rows together, their loads independent of each
// other. tile_c (sum_tile_channels) shrinks the tiles where kTile x kTile ones make too few blocks:
// with 32 of them at 128 -> 64 channels (8 blocks for 44 splits) and at 256 -> 128 (32 blocks,
// 11 splits), the generator's six d weight sums took 0.304 ms on the H200 run of 2026-11-28
// (nvidia-h200-2026-11-28-profile.log), 0.032 of them at 512 -> 512 on 32x32: 1.2 TB/s there.
template <typename acc_t>
constexpr int kSumTile = 128 / int(sizeof(acc_t));  // 32 floats along o: one 128-byte read a warp

// The tiles' extent along c: the largest power of two up to kSumTile that gives the sum two blocks
// an SM, or 1.
template <typename acc_t>
int sum_tile_channels(int64_t C_in, int64_t C_out, int64_t multiprocessors) {
  int tile_c = kSumTile<acc_t>;
  while (tile_c > 1 && ceil_div(C_in, tile_c) * ceil_div(C_out, kSumTile<acc_t>) < 2 * multiprocessors) tile_c /= 2;
  return tile_c;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kElementwiseThreads)
    sum_splits_kernel(const at::opmath_type<scalar_t>* __restrict__ partial, scalar_t* __restrict__ grad_weight,
                      bool channels_last, int64_t C_out, int64_t C_in, int splits, int tile_c) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kTile = kSumTile<acc_t>;
  constexpr int kRowStride = 9 * kTile + 1;  // [o][c * 9 + tap], padded: a walk along o hits every bank
  constexpr int kRowStep = kElementwiseThreads / kTile;  // threads along (tap, c): rows a pass apart
  constexpr int kRowsAtOnce = 4;
  __shared__ acc_t sums[kTile * kRowStride];
  const int64_t c0 = int64_t(blockIdx.x) * tile_c, o0 = int64_t(blockIdx.y) * kTile, pairs = C_in * C_out;
  const int o = threadIdx.x % kTile, rows = 9 * tile_c;
  for (int e0 = threadIdx.x / kTile; e0 < rows; e0 += kRowStep * kRowsAtOnce) {
    const acc_t* row[kRowsAtOnce];  // split 0's (tap, c, o), or null outside the tile
#pragma unroll
    for (int k = 0; k < kRowsAtOnce; ++k) {
      const int e = e0 + k * kRowStep, tap = e / tile_c, c = e % tile_c;
      const bool inside = e < rows && c0 + c < C_in && o0 + o < C_out;
      row[k] = inside ? partial + tap * pairs + (c0 + c) * C_out + o0 + o : nullptr;
    }
    acc_t row_sums[kRowsAtOnce] = {};
#pragma unroll 4  // loads of several splits in flight where a thread has few rows (small tile_c)
    for (int split = 0; split < splits; ++split) {
#pragma unroll
      for (int k = 0; k < kRowsAtOnce; ++k) {
        if (row[k] != nullptr) row_sums[k] += row[k][int64_t(split) * 9 * pairs];
      }
    }
#pragma unroll
    for (int k = 0; k < kRowsAtOnce; ++k) {
      const int e = e0 + k * kRowStep;
      if (e < rows) sums[o * kRowStride + e % tile_c * 9 + e / tile_c] = row_sums[k];
    }
  }
  __syncthreads();
  // Per o, the tile's 9 tile_c elements go out in d weight's order: (c, tap) for a contiguous one,
  // (tap, c) for channels_last; either way consecutive threads write consecutive elements.
  const int channels = int(std::min<int64_t>(tile_c, C_in - c0));
  for (int e = threadIdx.x; e < kTile * rows; e += kElementwiseThreads) {
    const int o_in_tile = e / rows, run = e % rows;
    const int c = channels_last ? run % tile_c : run / 9, tap = channels_last ? run / tile_c : run % 9;
    if (o0 + o_in_tile < C_out && c < channels) {
      const int64_t o = o0 + o_in_tile;
      const int64_t offset = channels_last ? (o * 9 + tap) * C_in + c0 + c : (o * C_in + c0 + c) * 9 + tap;
      grad_weight[offset] = static_cast<scalar_t>(sums[o_in_tile * kRowStride + c * 9 + tap]);
    }
  }
}

// A for dx and d weight: A[n, o, r, s] = the mean of dy's window of rows r - 1, r and columns
// s - 1, s, zeros outside dy's H2 x W2 counted in, for r <= H2 and s <= W2 (avg_pool2d(dy, 2,
// stride=1, padding=1)). dy's channels are contiguous and A is channels_last, dense; a thread
// takes kVec consecutive channels, a 16-byte vector where dy's channels allow it
// (channel_vectors), else one, of every `lanes_p`-th pixel of A in its block's run of pixels:
// consecutive threads read consecutive channels of dy and write A in order. ATen's channels_last
// avg_pool2d took 0.318 ms for this at (8, 512, 64, 64) bf16 on the H100 run of 2026-11-27 (68 MB
// of traffic, 23 us at the copy ceiling), the one-pixel-a-thread version of this kernel 0.029 ms.
// With bias_partial, d bias comes from the same reads (ATen's sum of dy took 0.051 ms more there):
// a thread also sums its windows' bottom-right pixels dy[r, s] (r < H2, s < W2: each pixel of dy
// once), its block's threads of one channel add theirs in order, and the block writes the sums as
// bias_partial[blockIdx.x][channel], which sum_rows adds up over the blocks (deterministic).
template <typename scalar_t, int kVec>
__global__ void __launch_bounds__(kElementwiseThreads)
    window_means_kernel(const scalar_t* __restrict__ grad_y, Strides dy_s, scalar_t* __restrict__ window_means,
                        at::opmath_type<scalar_t>* __restrict__ bias_partial, int64_t C, int H2, int W2,
                        int64_t pixels, int64_t pixels_per_block, int lanes_c) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vector = Packed<scalar_t, kVec>;
  __shared__ acc_t bias_sums[kElementwiseThreads * kVec];  // [lane_p][lane_c * kVec + k]
  const int lanes_p = kElementwiseThreads / lanes_c, lane_c = threadIdx.x % lanes_c, lane_p = threadIdx.x / lanes_c;
  const int64_t c = (int64_t(blockIdx.y) * lanes_c + lane_c) * kVec;
  const int64_t first = int64_t(blockIdx.x) * pixels_per_block, end = std::min(first + pixels_per_block, pixels);
  const int rows = H2 + 1, cols = W2 + 1;
  acc_t bias_sum[kVec] = {};
  for (int64_t pixel = first + lane_p; c < C && pixel < end; pixel += lanes_p) {
    const int64_t n = pixel / (int64_t(cols) * rows);
    const int r = int(pixel / cols % rows), s = int(pixel % cols);
    acc_t sums[kVec] = {};
    for (int row = r - 1; row <= r; ++row) {
      for (int col = s - 1; col <= s; ++col) {
        if (row < 0 || row >= H2 || col < 0 || col >= W2) continue;
        const Vector v = *reinterpret_cast<const Vector*>(grad_y + n * dy_s.n + c * dy_s.c + int64_t(row) * dy_s.h +
                                                           int64_t(col) * dy_s.w);
        for (int k = 0; k < kVec; ++k) sums[k] += static_cast<acc_t>(v.v[k]);
        if (row == r && col == s) {
          for (int k = 0; k < kVec; ++k) bias_sum[k] += static_cast<acc_t>(v.v[k]);
        }
      }
    }
    Vector means;
    for (int k = 0; k < kVec; ++k) means.v[k] = static_cast<scalar_t>(sums[k] * acc_t(0.25));
    if constexpr (kVec == 1) {
      window_means[pixel * C + c] = means.v[0];
    } else {
      store_packed(window_means + pixel * C + c, means);
    }
  }
  if (bias_partial == nullptr) return;  // the same for every thread of the grid
  for (int k = 0; k < kVec; ++k) bias_sums[lane_p * lanes_c * kVec + lane_c * kVec + k] = bias_sum[k];
  __syncthreads();
  for (int i = threadIdx.x; i < lanes_c * kVec; i += kElementwiseThreads) {
    const int64_t channel = int64_t(blockIdx.y) * lanes_c * kVec + i;
    if (channel >= C) continue;
    acc_t sum = 0;
    for (int p = 0; p < lanes_p; ++p) sum += bias_sums[p * lanes_c * kVec + i];
    bias_partial[int64_t(blockIdx.x) * C + channel] = sum;
  }
}

void check_grid(int64_t blocks, const char* what) {
  TORCH_CHECK(blocks < (int64_t(1) << 31), "upsample_conv2d: ", what, " needs ", blocks,
              " thread blocks along one grid axis, more than CUDA allows");
}

// Destination (N, M, kScale*H, kScale*W) = the phase_conv_kernel of the source: the forward's
// (src x) or dx's (src A, the means of dy's 2x2 windows).
// A grid of fewer blocks than the GPU holds at once (the generator's 8x8 level at batch 8 and 512
// channels, bf16: 32 forward blocks for 132 SMs of one block each) leaves SMs idle while each
// block runs all of K, so the source channels are then split into shares, one per block along z,
// as many as fill the GPU's block slots once (at most 16, at least a stage each), and the shares'
// float partials are summed afterwards (sum_rows). dst is dense (made by the callers).
template <int kSrcPhases, int kDstPhases>
void launch_phase_conv(const at::Tensor& src, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       at::Tensor& dst) {
  const int64_t N = dst.size(0), M = dst.size(1), K = src.size(1);
  const int H = int(dst.size(2) / (kDstPhases == 4 ? 2 : 1)), W = int(dst.size(3) / (kDstPhases == 4 ? 2 : 1));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "upsample_conv2d_cuda", [&] {
    using Tile = PhaseConvTile<typename Native<scalar_t>::type, kSrcPhases, kDstPhases>;
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor slabs = slab_weights<kDstPhases>(weight, Tile::kBM, Tile::kBK);
    const int tiles_h = int(ceil_div(H, Tile::kTH)), tiles_w = int(ceil_div(W, Tile::kTW));
    const int64_t tiles = N * tiles_h * tiles_w;
    const int64_t blocks_x = ceil_div(tiles, Tile::kTiles), blocks_y = slabs.size(1) / Tile::kBM;
    check_grid(blocks_x, "the pixel tiles");
    TORCH_CHECK(blocks_y < 65536, "upsample_conv2d: too many channels (", M, ")");
    const int64_t slots = Tile::kBlocksPerSM * int64_t(multiprocessor_count(src));
    const int shares =
        int(std::clamp<int64_t>(slots / (blocks_x * blocks_y), 1, std::min<int64_t>(16, slabs.size(2) / Tile::kBK)));
    // Share s's partial sums: samples [s * N, (s + 1) * N) of a float tensor with dst's strides, so
    // share s starts dst.numel() elements after share s - 1: the rows that sum_rows adds up.
    TORCH_INTERNAL_ASSERT(dst.is_non_overlapping_and_dense() && dst.stride(0) * N == dst.numel());
    const at::Tensor partial =
        shares > 1 ? at::empty_strided({shares * N, M, dst.size(2), dst.size(3)}, dst.strides(),
                                       dst.options().dtype(at::toOpMathType(dst.scalar_type())))
                   : at::Tensor();
    const at::Tensor bias_c = bias ? bias->contiguous() : at::Tensor();
    launch_kernel(phase_conv_kernel<scalar_t, kSrcPhases, kDstPhases>,
                  dim3(unsigned(blocks_x), unsigned(blocks_y), unsigned(shares)),
                  BlockShape(Tile::kThreads, Tile::kSharedBytes), src.const_data_ptr<scalar_t>(),
                  strides_of(src), slabs.const_data_ptr<scalar_t>(), bias ? bias_c.const_data_ptr<scalar_t>() : nullptr,
                  dst.mutable_data_ptr<scalar_t>(), strides_of(shares > 1 ? partial : dst),
                  shares > 1 ? partial.mutable_data_ptr<acc_t>() : nullptr, dst.numel(), H,
                  W, int(src.size(2)), int(src.size(3)), K, M, slabs.size(2), slabs.size(1), tiles, tiles_h, tiles_w,
                  channel_vectors(src), channels_innermost(dst), shares == 1 && channel_vectors(dst));
    if (shares > 1) {  // only grids under the block slots split: dst is far below 2^31 blocks of elements
      sum_rows<scalar_t>(partial.const_data_ptr<acc_t>(), dst.mutable_data_ptr<scalar_t>(), shares, dst.numel());
    }
  });
}

// window_means_kernel's A, (N, C_out, 2H + 1, 2W + 1) in dy's dtype, channels_last, and d bias
// (C_out) if `with_grad_bias`, else an undefined tensor.
std::pair<at::Tensor, at::Tensor> window_means_cuda(const at::Tensor& grad_y_in, bool with_grad_bias) {
  const at::Tensor grad_y = channels_contiguous(grad_y_in);
  const int64_t N = grad_y.size(0), C = grad_y.size(1);
  const int H2 = int(grad_y.size(2)), W2 = int(grad_y.size(3));
  at::Tensor window_means =
      at::empty({N, C, H2 + 1, W2 + 1}, grad_y.options().memory_format(at::MemoryFormat::ChannelsLast));
  at::Tensor grad_bias;
  // Vectors of channels: A, fresh, is aligned, and its channel count is dy's.
  const bool vectors = channel_vectors(grad_y);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_y.scalar_type(), "upsample_conv2d_window_means", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kVec = 16 / int(sizeof(scalar_t));
    const int vec = vectors ? kVec : 1;
    // Threads along the channels: enough for C's vectors (a power of two), at most a warp; the
    // rest of a block's threads take its run of pixels, the runs sized for about 4 blocks per SM
    // along the pixels, from 1 to 16 pixels a thread.
    const int64_t channel_vectors_count = ceil_div(C, vec);
    int lanes_c = 1;
    while (lanes_c < kWarp && lanes_c < channel_vectors_count) lanes_c *= 2;
    const int64_t pixels = N * (H2 + 1) * (W2 + 1), lanes_p = kElementwiseThreads / lanes_c;
    const int64_t pixels_per_block = std::max<int64_t>(
        lanes_p, std::min<int64_t>(16 * lanes_p, ceil_div(pixels, 4 * int64_t(multiprocessor_count(grad_y)))));
    const int64_t blocks_p = ceil_div(pixels, pixels_per_block), blocks_c = ceil_div(channel_vectors_count, lanes_c);
    check_grid(blocks_p, "the window means");
    TORCH_CHECK(blocks_c < 65536, "upsample_conv2d: too many output channels (", C, ")");
    const at::Tensor bias_partial =
        with_grad_bias ? at::empty({blocks_p, C}, grad_y.options().dtype(at::toOpMathType(grad_y.scalar_type())))
                       : at::Tensor();
    launch_kernel(vectors ? window_means_kernel<scalar_t, kVec> : window_means_kernel<scalar_t, 1>,
                  dim3(unsigned(blocks_p), unsigned(blocks_c)), kElementwiseThreads,
                  grad_y.const_data_ptr<scalar_t>(), strides_of(grad_y), window_means.mutable_data_ptr<scalar_t>(),
                  with_grad_bias ? bias_partial.mutable_data_ptr<acc_t>() : nullptr, C, H2, W2, pixels,
                  pixels_per_block, lanes_c);
    if (with_grad_bias) {
      grad_bias = at::empty({C}, grad_y.options());
      sum_rows<scalar_t>(bias_partial.const_data_ptr<acc_t>(), grad_bias.mutable_data_ptr<scalar_t>(), blocks_p, C);
    }
  });
  return {window_means, grad_bias};
}

at::Tensor upsample_conv2d_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_upsample_conv2d_args(x, weight, bias);
  const DeviceGuard guard(x.device());
  const int64_t N = x.size(0), C_out = weight.size(0), H = x.size(2), W = x.size(3);
  TORCH_CHECK(H < (int64_t(1) << 30) && W < (int64_t(1) << 30), "upsample_conv2d: x is too large, got ", x.sizes());
  at::Tensor y =
      at::empty({N, C_out, 2 * H, 2 * W}, x.options().memory_format(conv_output_memory_format(x, weight)));
  if (y.numel() > 0) launch_phase_conv<1, 4>(channels_contiguous(x), weight, bias, y);
  return y;
}

// grad_weight_kernel's pixel shares (splits, no more than the tiles, at most kMostSplits): the
// fewest that minimise the time of the busiest block slot, waves x (tiles a block + kBlockTiles),
// with `blocks_per_split` blocks a share and `slots` blocks the GPU holds at once. kBlockTiles
// stands for what a block costs beyond its tiles, its pipeline's fill and its epilogue (64 x 64 x
// 3 float partials written): an estimate of about two tiles' time, not measured. Filling the
// slots once with as few shares as that takes, the rule before, could leave a last wave nearly
// empty: at 8 x 512 -> 512 channels on 32x32, 2 shares made 384 blocks of 64 tiles for the H100's
// 264 slots, 1.45 waves, and SMs held no block for 29% of the kernel's cycles (Nsight Compute's
// SM active cycles against elapsed, nvidia-h100-2026-11-27d-ncu.txt); 4 shares make 768 blocks of
// 32 tiles, 2.9 waves: 3 x 34 against 2 x 66. Left out: that a lone block on an SM runs faster
// than two, and the shares' float partials (9.4 MB each at 512 -> 512, written, then summed).
// The old cap of 32 shares left the few-channel levels short of blocks (a 128 -> 64 channel
// level, 6 blocks a share, got 192 blocks for 264 slots); the model takes many shares only where
// a share has few blocks, and so small partials (a wave of blocks writes 264 x 48 KiB).
constexpr int64_t kMostSplits = 256;
int grad_weight_splits(int64_t blocks_per_split, int64_t slots, int64_t tiles) {
  constexpr int64_t kBlockTiles = 2;
  int best = 1;
  int64_t best_time = std::numeric_limits<int64_t>::max();
  for (int splits = 1; splits <= std::min(kMostSplits, tiles); ++splits) {
    const int64_t time = ceil_div(blocks_per_split * splits, slots) * (ceil_div(tiles, splits) + kBlockTiles);
    if (time < best_time) {
      best = splits;
      best_time = time;
    }
  }
  return best;
}

// dW from A, as float partials over `splits` pixel shares, then summed in a fixed order, in the
// weight's memory format.
at::Tensor grad_weight_cuda(const at::Tensor& window_means, const at::Tensor& x, const at::Tensor& weight) {
  const int64_t N = x.size(0), C_in = x.size(1), C_out = weight.size(0);
  const int H = int(x.size(2)), W = int(x.size(3));
  const auto acc_dtype = at::toOpMathType(x.scalar_type());
  const at::MemoryFormat layout = output_memory_format(weight);
  at::Tensor grad_weight = at::empty(weight.sizes(), x.options().memory_format(layout));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upsample_conv2d_grad_weight_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    using Tile = GradWeightTile<typename Native<scalar_t>::type>;
    const int tiles_h = int(ceil_div(H, Tile::kRows)), tiles_w = int(ceil_div(W, Tile::kTW));
    const int64_t tiles = N * tiles_h * tiles_w;
    const int64_t c_blocks = ceil_div(C_in, Tile::kBC), o_blocks = ceil_div(C_out, Tile::kBO);
    const int splits = grad_weight_splits(Tile::kTaps * c_blocks * o_blocks,
                                          Tile::kBlocksPerSM * int64_t(multiprocessor_count(x)), tiles);
    const int tile_c = sum_tile_channels<acc_t>(C_in, C_out, multiprocessor_count(x));
    // The sum's grid has more blocks along either axis than grad_weight_kernel's: bounding it bounds both.
    check_grid(ceil_div(C_in, tile_c), "the input channels");
    TORCH_CHECK(ceil_div(C_out, kSumTile<acc_t>) < 65536, "upsample_conv2d: too many output channels (", C_out, ")");
    const at::Tensor partial = at::empty({splits, 9, C_in, C_out}, x.options().dtype(acc_dtype));
    launch_kernel(grad_weight_kernel<scalar_t>,
                  dim3(unsigned(c_blocks), unsigned(o_blocks), unsigned(Tile::kTaps * splits)),
                  BlockShape(Tile::kThreads, Tile::kSharedBytes), x.const_data_ptr<scalar_t>(), strides_of(x),
                  window_means.const_data_ptr<scalar_t>(), strides_of(window_means), partial.mutable_data_ptr<acc_t>(),
                  H, W, C_in, C_out, tiles, tiles_h, tiles_w, splits, channel_vectors(x),
                  channel_vectors(window_means));
    launch_kernel(sum_splits_kernel<scalar_t>,
                  dim3(unsigned(ceil_div(C_in, tile_c)), unsigned(ceil_div(C_out, kSumTile<acc_t>))),
                  kElementwiseThreads, partial.const_data_ptr<acc_t>(), grad_weight.mutable_data_ptr<scalar_t>(),
                  layout == at::MemoryFormat::ChannelsLast, C_out, C_in, splits, tile_c);
  });
  return grad_weight;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> upsample_conv2d_backward_cuda(const at::Tensor& grad_y,
                                                                             const at::Tensor& x,
                                                                             const at::Tensor& weight,
                                                                             std::array<bool, 3> output_mask) {
  check_upsample_conv2d_backward_args(grad_y, x, weight);
  const DeviceGuard guard(x.device());
  TORCH_CHECK(x.size(2) < (int64_t(1) << 30) && x.size(3) < (int64_t(1) << 30), "upsample_conv2d: x is too large, got ",
              x.sizes());
  at::Tensor grad_x = not_computed(x), grad_weight = not_computed(x);
  // Sums over nothing (no pixels, or no channels on either side) are zeros. Else both GEMMs read A,
  // the means of dy's 2x2 windows, (2H + 1) x (2W + 1) (count_include_pad: always 4).
  const bool empty = x.numel() == 0 || grad_y.numel() == 0;
  // d bias from A's reads of dy when A is made, else a sum of its own.
  at::Tensor window_means, grad_bias;
  if (!empty && (output_mask[0] || output_mask[1])) {
    std::tie(window_means, grad_bias) = window_means_cuda(grad_y, output_mask[2]);
  } else if (output_mask[2]) {
    grad_bias = grad_y.sum({0, 2, 3});
  }
  if (output_mask[0]) {
    grad_x = at::empty(x.sizes(), x.options().memory_format(output_memory_format(x)));
    if (empty) {
      grad_x.zero_();
    } else {
      launch_phase_conv<4, 1>(window_means, weight, std::nullopt, grad_x);
    }
  }
  if (output_mask[1]) {
    grad_weight = empty ? at::zeros(weight.sizes(), x.options().memory_format(output_memory_format(weight)))
                        : grad_weight_cuda(window_means, channels_contiguous(x), weight);
  }
  return {grad_x, grad_weight, output_mask[2] ? grad_bias : not_computed(x)};
}

}  // namespace

#ifndef STYLEGAN_OPS_EMULATE_CUDA
TORCH_LIBRARY_IMPL(stylegan_ops, CUDA, m) {
  m.impl("upsample_conv2d", &upsample_conv2d_cuda);
  m.impl("upsample_conv2d_backward", &upsample_conv2d_backward_cuda);
}
#endif

}  // namespace stylegan_ops

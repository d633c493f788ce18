// The subset of CUDA that the files in csrc/cuda/ use, on CPU threads, so their device code
// compiles with the host compiler and runs on CPU tensors in CI (no GPU there).
//
// A thread block is blockDim.x std::threads; blocks run one after another, so a __shared__
// array can be a function-local static. __syncthreads is a block-wide barrier. __syncwarp is
// one too: that is only equivalent because every warp of those kernels reaches each
// __syncwarp the same number of times. __shfl_down_sync exchanges through a per-warp buffer
// between two warp barriers, so all 32 lanes must call it together (as the kernels do).
// WMMA (nvcuda::wmma) is emulated for the 16-bit operand shapes (m32n8k16, m16n16k16, m8n32k16)
// as the CUDA C++ Programming Guide specifies them, with their preconditions checked (pointers
// 256-bit aligned, ldm a multiple of 16 bytes) and the kernels' own rule that fragments live in
// shared memory (their bfloat16 loads are PTX naming the .shared state space). What this cannot
// check: how the hardware distributes fragments over lanes (opaque to the kernels), inline PTX
// (the kernels' bfloat16 fragment loads and vector stores run their plain C++ twins here),
// memory-model races between blocks, and anything about speed.
// Asynchronous copies (__pipeline_memcpy_async) are queued per thread and land in shared memory
// only when __pipeline_wait_prior lets their group complete, as late as the GPU may land them,
// so a kernel that reads a stage before waiting for it reads stale data here too; a copy still
// pending when the thread ends, or one outside the dynamic shared memory, is a violation.
#pragma once

#include <ATen/ATen.h>

#include <barrier>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
#include "../../csrc/cuda/block_shape.h"  // after dim3, which it uses

namespace cuda_emulation {
constexpr int kWarp = 32;
struct Warp {
  std::barrier<> barrier{kWarp};
  alignas(8) unsigned char slots[kWarp][8];
};
inline thread_local dim3 thread_idx, block_idx;
inline dim3 block_dim, grid_dim;
inline unsigned char* dynamic_smem = nullptr;
inline size_t dynamic_smem_bytes = 0;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::unique_ptr<Warp>> warps;
// A broken precondition of a CUDA call, kept for launch_kernel to raise once the block's
// threads have joined (a throw inside one thread would strand the others at a barrier).
inline std::mutex violation_mutex;
inline std::string violation;
inline void report_violation(const std::string& what) {
  const std::lock_guard<std::mutex> lock(violation_mutex);
  if (violation.empty()) violation = what;
}
}  // namespace cuda_emulation

#define threadIdx (cuda_emulation::thread_idx)
#define blockIdx (cuda_emulation::block_idx)
#define blockDim (cuda_emulation::block_dim)
#define gridDim (cuda_emulation::grid_dim)

inline void __syncthreads() { cuda_emulation::block_barrier->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { __syncthreads(); }

template <typename T>
T __shfl_down_sync(unsigned, T value, unsigned offset) {
  static_assert(sizeof(T) <= 8, "one slot per lane");
  using cuda_emulation::kWarp;
  cuda_emulation::Warp& warp = *cuda_emulation::warps[threadIdx.x / kWarp];
  const unsigned lane = threadIdx.x % kWarp;
  std::memcpy(warp.slots[lane], &value, sizeof(T));
  warp.barrier.arrive_and_wait();
  T result = value;
  if (lane + offset < unsigned(kWarp)) std::memcpy(&result, warp.slots[lane + offset], sizeof(T));
  warp.barrier.arrive_and_wait();
  return result;
}
// ---- cp.async (cuda_pipeline_primitives.h) ------------------------------------------------------
inline unsigned char* dynamic_shared_memory() { return cuda_emulation::dynamic_smem; }

namespace cuda_emulation {
struct PendingCopy {
  void* dst;
  const void* src;
  size_t size, zfill;
};
inline thread_local std::vector<PendingCopy> open_group;
inline thread_local std::deque<std::vector<PendingCopy>> committed_groups;
}  // namespace cuda_emulation

inline void __pipeline_memcpy_async(void* dst, const void* src, size_t size, size_t zfill = 0) {
  using namespace cuda_emulation;
  const auto d = reinterpret_cast<std::uintptr_t>(dst), base = reinterpret_cast<std::uintptr_t>(dynamic_smem);
  if ((size != 4 && size != 8 && size != 16) || zfill > size) {
    report_violation("cp.async: size must be 4, 8 or 16 bytes and zfill at most the size");
  } else if (d < base || d + size > base + dynamic_smem_bytes) {
    report_violation("cp.async: destination outside the dynamic shared memory");
  } else if (d % size != 0 || (zfill < size && reinterpret_cast<std::uintptr_t>(src) % size != 0)) {
    report_violation("cp.async: pointers not aligned to the copy size");
  } else {
    open_group.push_back({dst, src, size, zfill});
  }
}
inline void __pipeline_commit() {
  cuda_emulation::committed_groups.push_back(std::exchange(cuda_emulation::open_group, {}));
}
// Completes every committed group but the newest `prior`.
inline void __pipeline_wait_prior(size_t prior) {
  auto& groups = cuda_emulation::committed_groups;
  while (groups.size() > prior) {
    for (const auto& copy : groups.front()) {
      auto* dst = static_cast<unsigned char*>(copy.dst);
      std::memcpy(dst, copy.src, copy.size - copy.zfill);
      std::memset(dst + copy.size - copy.zfill, 0, copy.zfill);
    }
    groups.pop_front();
  }
}

// ---- WMMA ----------------------------------------------------------------------------------------
using __half = at::Half;
using __nv_bfloat16 = at::BFloat16;
inline float __half2float(__half v) { return float(v); }
inline float __bfloat162float(__nv_bfloat16 v) { return float(v); }

namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

// Hardware fragments are spread over the warp in an unspecified way; here lane l holds row l % M
// of a matrix_a (M x 16) and, of an accumulator (M x N), that row's kCols = M * N / 32 columns
// from (l / M) * kCols on; of a matrix_b (16 x N) it holds those columns of every row. The
// shapes are WMMA's for 16-bit operands: m32n8k16, m16n16k16, m8n32k16. Loads read memory when
// called, as on the GPU.
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(K == 16 && M * N == 256 && (M == 32 || M == 16 || M == 8), "a WMMA shape for 16-bit operands");
  static constexpr int kCols = M * N / 32;
  static constexpr int kElems = std::is_same_v<Use, matrix_b> ? K * kCols : std::is_same_v<Use, matrix_a> ? K : kCols;
  T x[kElems];
};

namespace detail {
inline unsigned lane() { return threadIdx.x % cuda_emulation::kWarp; }
template <int M>
int row() {
  return int(lane()) % M;
}
template <int M, int N>
int first_col() {
  return int(lane()) / M * (M * N / 32);
}
template <typename T>
void check_operand(const T* p, unsigned ldm) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  const auto base = reinterpret_cast<std::uintptr_t>(cuda_emulation::dynamic_smem);
  if (address < base || address >= base + cuda_emulation::dynamic_smem_bytes) {
    cuda_emulation::report_violation("wmma: fragment outside the dynamic shared memory (bf16 loads are .shared PTX)");
  }
  if (address % 32 != 0) {
    cuda_emulation::report_violation("wmma: pointer not 256-bit aligned");
  }
  if (ldm * sizeof(T) % 16 != 0) {
    cuda_emulation::report_violation("wmma: ldm of " + std::to_string(ldm) + " elements is not a multiple of 16 bytes");
  }
}
// Element (row, col) of a matrix stored row- or column-major with leading dimension ldm.
template <typename Layout, typename T>
T at(const T* p, unsigned ldm, int row, int col) {
  return std::is_same_v<Layout, row_major> ? p[row * ldm + col] : p[col * ldm + row];
}
}  // namespace detail

template <int M, int N, typename Layout, typename T>
void load_matrix_sync(fragment<matrix_a, M, N, 16, T, Layout>& a, const T* p, unsigned ldm) {
  detail::check_operand(p, ldm);
  for (int k = 0; k < 16; ++k) a.x[k] = detail::at<Layout>(p, ldm, detail::row<M>(), k);
}
template <int M, int N, typename Layout, typename T>
void load_matrix_sync(fragment<matrix_b, M, N, 16, T, Layout>& b, const T* p, unsigned ldm) {
  detail::check_operand(p, ldm);
  constexpr int kCols = M * N / 32;
  for (int k = 0; k < 16; ++k) {
    for (int n = 0; n < kCols; ++n) b.x[k * kCols + n] = detail::at<Layout>(p, ldm, k, detail::first_col<M, N>() + n);
  }
}
template <int M, int N>
void fill_fragment(fragment<accumulator, M, N, 16, float>& c, float value) {
  for (float& v : c.x) v = value;
}
// d = a b + c, products and sums in float.
template <int M, int N, typename T, typename LayoutA, typename LayoutB>
void mma_sync(fragment<accumulator, M, N, 16, float>& d, const fragment<matrix_a, M, N, 16, T, LayoutA>& a,
              const fragment<matrix_b, M, N, 16, T, LayoutB>& b, const fragment<accumulator, M, N, 16, float>& c) {
  constexpr int kCols = M * N / 32;
  for (int n = 0; n < kCols; ++n) {
    float sum = c.x[n];
    for (int k = 0; k < 16; ++k) sum += float(a.x[k]) * float(b.x[k * kCols + n]);
    d.x[n] = sum;
  }
}
template <int M, int N>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, 16, float>& c, unsigned ldm, layout_t layout) {
  detail::check_operand(p, ldm);
  const int row = detail::row<M>(), col = detail::first_col<M, N>();
  for (int n = 0; n < M * N / 32; ++n) {
    (layout == mem_row_major ? p[row * ldm + col + n] : p[(col + n) * ldm + row]) = c.x[n];
  }
}
}  // namespace nvcuda::wmma

// The host-side helpers the kernel file takes from the CUDA runtime when not emulated.
struct DeviceGuard {
  explicit DeviceGuard(const c10::Device&) {}
};
// A small "GPU", so that the grad-weight kernel splits its pixels over several blocks.
inline int multiprocessor_count(const at::Tensor&) { return 16; }

template <typename Kernel, typename... Args>
void launch_kernel(Kernel kernel, dim3 grid, stylegan_ops::BlockShape block, Args... args) {
  const int threads = int(block.threads.x);
  TORCH_CHECK(block.threads.y == 1 && block.threads.z == 1 && threads % cuda_emulation::kWarp == 0,
              "emulated launch: bad block");
  std::barrier<> barrier(threads);
  cuda_emulation::block_barrier = &barrier;
  cuda_emulation::block_dim = block.threads;
  cuda_emulation::grid_dim = grid;
  cuda_emulation::warps.clear();
  for (int w = 0; w < threads / cuda_emulation::kWarp; ++w) {
    cuda_emulation::warps.push_back(std::make_unique<cuda_emulation::Warp>());
  }
  // Dynamic shared memory, 128-byte aligned, all bits set (NaN in every floating type): a read of
  // a slot never written shows in the results.
  std::vector<unsigned char> shared(block.shared_bytes + 128, 0xff);
  cuda_emulation::dynamic_smem = shared.data() + (128 - reinterpret_cast<std::uintptr_t>(shared.data()) % 128);
  cuda_emulation::dynamic_smem_bytes = block.shared_bytes;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        std::vector<std::thread> team;
        for (int t = 0; t < threads; ++t) {
          team.emplace_back([&, t] {
            cuda_emulation::thread_idx = dim3(unsigned(t));
            cuda_emulation::block_idx = dim3(x, y, z);
            kernel(args...);
            if (!cuda_emulation::open_group.empty() || !cuda_emulation::committed_groups.empty()) {
              cuda_emulation::report_violation("cp.async: copies still pending when the thread ended");
              cuda_emulation::open_group.clear();
              cuda_emulation::committed_groups.clear();
            }
          });
        }
        for (auto& thread : team) thread.join();
      }
    }
  }
  cuda_emulation::block_barrier = nullptr;
  cuda_emulation::dynamic_smem = nullptr;
  cuda_emulation::dynamic_smem_bytes = 0;
  const std::string violation = std::exchange(cuda_emulation::violation, std::string());
  TORCH_CHECK(violation.empty(), "emulated kernel broke a CUDA precondition: ", violation);
}

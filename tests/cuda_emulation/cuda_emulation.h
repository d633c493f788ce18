// The subset of CUDA that the files in csrc/cuda/ use, on CPU threads, so their device code
// compiles with the host compiler and runs on CPU tensors in CI (no GPU there).
//
// A thread block is blockDim.x std::threads; blocks run one after another, so a __shared__
// array can be a function-local static. __syncthreads is a block-wide barrier. __syncwarp is
// one too: that is only equivalent because every warp of those kernels reaches each
// __syncwarp the same number of times. __shfl_down_sync exchanges through a per-warp buffer
// between two warp barriers, so all 32 lanes must call it together (as the kernels do).
// What this cannot check: tensor-core (WMMA) fragment semantics, memory-model races between
// blocks, and anything about speed.
#pragma once

#include <ATen/ATen.h>

#include <barrier>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) int4 {
  int x, y, z, w;
};

namespace cuda_emulation {
constexpr int kWarp = 32;
struct Warp {
  std::barrier<> barrier{kWarp};
  alignas(8) unsigned char slots[kWarp][8];
};
inline thread_local dim3 thread_idx, block_idx;
inline dim3 block_dim;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::unique_ptr<Warp>> warps;
}  // namespace cuda_emulation

#define threadIdx (cuda_emulation::thread_idx)
#define blockIdx (cuda_emulation::block_idx)
#define blockDim (cuda_emulation::block_dim)

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
template <typename T>
T __ldg(const T* p) {
  return *p;
}

// The host-side helpers the kernel file takes from the CUDA runtime when not emulated.
struct DeviceGuard {
  explicit DeviceGuard(const c10::Device&) {}
};
// A small "GPU", so that the grad-weight kernel splits its pixels over several blocks.
inline int multiprocessor_count(const at::Tensor&) { return 16; }

template <typename Kernel, typename... Args>
void launch_kernel(Kernel kernel, dim3 grid, dim3 block, Args... args) {
  const int threads = int(block.x);
  TORCH_CHECK(block.y == 1 && block.z == 1 && threads % cuda_emulation::kWarp == 0, "emulated launch: bad block");
  std::barrier<> barrier(threads);
  cuda_emulation::block_barrier = &barrier;
  cuda_emulation::block_dim = block;
  cuda_emulation::warps.clear();
  for (int w = 0; w < threads / cuda_emulation::kWarp; ++w) {
    cuda_emulation::warps.push_back(std::make_unique<cuda_emulation::Warp>());
  }
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        std::vector<std::thread> team;
        for (int t = 0; t < threads; ++t) {
          team.emplace_back([&, t] {
            cuda_emulation::thread_idx = dim3(unsigned(t));
            cuda_emulation::block_idx = dim3(x, y, z);
            kernel(args...);
          });
        }
        for (auto& thread : team) thread.join();
      }
    }
  }
  cuda_emulation::block_barrier = nullptr;
}

// The subset of CUDA that csrc/cuda/upsample_conv2d_kernel.cu uses, on CPU threads, so its
// device code compiles with the host compiler and runs on CPU tensors in CI (no GPU there).
//
// A thread block is `threads` std::threads; blocks run one after another, so a __shared__
// array can be a function-local static. __syncthreads is a block-wide barrier. __syncwarp is
// one too: that is only equivalent because every warp of those kernels reaches each
// __syncwarp the same number of times. What this cannot check: tensor-core (WMMA) fragment
// semantics, memory-model races between blocks, and anything about speed.
#pragma once

#include <ATen/ATen.h>

#include <barrier>
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
inline thread_local dim3 thread_idx, block_idx;
inline std::barrier<>* block_barrier = nullptr;
}  // namespace cuda_emulation

#define threadIdx (cuda_emulation::thread_idx)
#define blockIdx (cuda_emulation::block_idx)

inline void __syncthreads() { cuda_emulation::block_barrier->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { __syncthreads(); }
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
void launch_kernel(Kernel kernel, dim3 grid, int threads, Args... args) {
  std::barrier<> barrier(threads);
  cuda_emulation::block_barrier = &barrier;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        std::vector<std::thread> block;
        for (int t = 0; t < threads; ++t) {
          block.emplace_back([&, t] {
            cuda_emulation::thread_idx = dim3(unsigned(t));
            cuda_emulation::block_idx = dim3(x, y, z);
            kernel(args...);
          });
        }
        for (auto& thread : block) thread.join();
      }
    }
  }
  cuda_emulation::block_barrier = nullptr;
}

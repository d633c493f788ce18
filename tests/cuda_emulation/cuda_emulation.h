// The subset of CUDA that the files in csrc/cuda/ use, on CPU threads, so their device code
// compiles with the host compiler and runs on CPU tensors in CI (no GPU there).
//
// A thread block is blockDim.x std::threads; blocks run one after another, so a __shared__
// array can be a function-local static. __syncthreads is a block-wide barrier. __syncwarp is
// one too: that is only equivalent because every warp of those kernels reaches each
// __syncwarp the same number of times. __shfl_down_sync exchanges through a per-warp buffer
// between two warp barriers, so all 32 lanes must call it together (as the kernels do).
// The tensor-core instructions the kernels issue as PTX, ldmatrix and mma.sync m16n8k16 and
// m16n8k8 of TF32 (through mma_tiles, a warp's tiles in one call), are emulated lane by lane as
// the PTX ISA defines their fragments (which lane holds which elements; mma's operands exchanged
// through the warp's buffers; TF32 operands read with their 13 low bits dropped, the least a
// tensor core may read of a float32 register), with their rules checked: ldmatrix rows 16-byte
// aligned in the dynamic shared memory, and, a rule of the kernels' own, the 8 rows of every
// matrix on 8 different bank groups (no bank conflict), and none either in store_shared, the
// epilogues' stores of mma's sums, or in load_shared, the word loads of transposed float32
// operands. What this cannot check: that the hardware agrees with this reading of the ISA (the
// GPU-marked tests do), the kernels' other inline PTX (vector stores run their plain C++ twins
// here), memory-model races between blocks, and anything about speed.
// Asynchronous copies (__pipeline_memcpy_async) are queued per thread and land in shared memory
// only when __pipeline_wait_prior lets their group complete, as late as the GPU may land them,
// so a kernel that reads a stage before waiting for it reads stale data here too; a copy still
// pending when the thread ends, or one outside the dynamic shared memory, is a violation.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <barrier>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <iterator>
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
constexpr int kMmaRegisters = 12;  // a lane's A and B registers in one mma_tiles: 2 A tiles and 2 B tiles
struct Warp {
  std::barrier<> barrier{kWarp};
  alignas(8) unsigned char slots[kWarp][8];  // __shfl_down_sync
  // mma_tiles' A and B registers, each lane's, in two buffers that calls take in turns: a lane
  // writes a buffer again two calls later, after the barrier of the call between, which every
  // lane reaches only once done reading it. One barrier a call.
  unsigned operands[2][kWarp][kMmaRegisters];
  unsigned mma_calls[kWarp]{};
};
inline thread_local dim3 thread_idx, block_idx;
inline dim3 block_dim, grid_dim;
inline unsigned char* dynamic_smem = nullptr;
inline size_t dynamic_smem_bytes = 0;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::unique_ptr<Warp>> warps;
inline int64_t kernel_launches = 0;  // every launch_kernel so far (read by tests through runtime_emulated.cpp)
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

// ---- tensor cores: ldmatrix, mma.sync m16n8k16 and m16n8k8 (TF32) --------------------------------
using __half = at::Half;
using __nv_bfloat16 = at::BFloat16;
inline float __half2float(__half v) { return float(v); }
inline float __bfloat162float(__nv_bfloat16 v) { return float(v); }

namespace cuda_emulation {
inline Warp& this_warp() { return *warps[threadIdx.x / kWarp]; }
inline unsigned lane() { return threadIdx.x % kWarp; }
// The element of 16-bit type T in the low (half 0) or high (half 1) half of a register.
template <typename T>
float unpack(unsigned bits, int half) {
  const auto element = static_cast<uint16_t>(bits >> (16 * half));
  T value;
  std::memcpy(&value, &element, sizeof(element));
  return float(value);
}
}  // namespace cuda_emulation

// ldmatrix.sync.aligned.m8n8.x{kCount}{.trans}.shared.b16, as the PTX ISA defines it: lane
// 8j + r gives the address of row r of 8x8 matrix j (16 bytes, 16-byte aligned, in shared
// memory), here row_of(8j + r), which each lane evaluates for the lanes whose rows it reads (no
// exchange between lanes); register j of lane l receives row l / 4, elements 2 (l % 4) and
// 2 (l % 4) + 1, of matrix j, or with kTrans its column l / 4, elements 2 (l % 4) and 2 (l % 4) + 1,
// the lower element in the lower half. The 8 rows of a matrix must fall on 8 different 16-byte
// bank groups of the 128 bytes a shared-memory wavefront serves: the kernels lay their tiles out
// so that they do, and a row sharing banks with another (an n-way conflict, n wavefronts) is a
// violation here.
template <int kCount, bool kTrans, typename RowOf>
void ldmatrix(unsigned (&r)[kCount], const RowOf& row_of) {
  using namespace cuda_emulation;
  static_assert(kCount == 1 || kCount == 2 || kCount == 4, "ldmatrix .x1, .x2 or .x4");
  const auto row = [&](unsigned j, unsigned i) {
    return reinterpret_cast<const unsigned char*>(static_cast<const void*>(row_of(int(8 * j + i))));
  };
  const unsigned l = lane();
  for (unsigned j = 0; j < unsigned(kCount); ++j) {
    if (l == 0) {
      unsigned groups = 0;  // the 16-byte bank groups (of 8) the matrix's rows fall on
      for (unsigned i = 0; i < 8; ++i) {
        const unsigned char* p = row(j, i);
        if (p < dynamic_smem || p + 16 > dynamic_smem + dynamic_smem_bytes || (p - dynamic_smem) % 16 != 0) {
          report_violation("ldmatrix: a row outside the dynamic shared memory or not 16-byte aligned");
          return;
        }
        groups |= 1u << ((p - dynamic_smem) / 16 % 8);
      }
      if (groups != 0xffu) report_violation("ldmatrix: two rows of a matrix on the same banks (a bank conflict)");
    }
    uint16_t pair[2];
    for (unsigned e = 0; e < 2; ++e) {
      std::memcpy(&pair[e], kTrans ? row(j, 2 * (l % 4) + e) + 2 * (l / 4) : row(j, l / 4) + 4 * (l % 4) + 2 * e, 2);
    }
    r[j] = unsigned(pair[0]) | unsigned(pair[1]) << 16;
  }
}

namespace cuda_emulation {
// The rule of store_shared and load_shared, a warp's accesses of kCount 4-byte words a lane at
// address_of(lane) (one st.shared / ld.shared, .f32 or .v2.f32): shared memory serves 128 bytes a
// wavefront, the lanes of a warp 32 / kCount at a time, and a rule of the kernels' own is that
// those lanes' distinct words fall on distinct banks (no bank conflict; lanes of one word share
// it). Checked by lane 0 for the warp, with the accesses' alignment; `op` names the access.
template <int kCount, typename AddressOf>
void check_shared_access(const AddressOf& address_of, const char* op) {
  constexpr unsigned kBytes = 4 * kCount, kLanesAtOnce = kWarp / kCount;
  if (lane() != 0) return;
  for (unsigned first = 0; first < unsigned(kWarp); first += kLanesAtOnce) {
    std::ptrdiff_t bank_word[32];  // the word each bank serves in this wavefront, or -1
    std::fill(std::begin(bank_word), std::end(bank_word), std::ptrdiff_t(-1));
    for (unsigned l = first; l < first + kLanesAtOnce; ++l) {
      const auto* p = reinterpret_cast<const unsigned char*>(static_cast<const void*>(address_of(int(l))));
      if (p < dynamic_smem || p + kBytes > dynamic_smem + dynamic_smem_bytes || (p - dynamic_smem) % kBytes != 0) {
        report_violation(std::string(op) + ": an address outside the dynamic shared memory or not aligned");
        return;
      }
      for (unsigned w = 0; w < unsigned(kCount); ++w) {
        const std::ptrdiff_t word = (p - dynamic_smem) / 4 + w;
        std::ptrdiff_t& served = bank_word[word % 32];
        if (served >= 0 && served != word) {
          report_violation(std::string(op) + ": two words of one wavefront on the same bank (a bank conflict)");
        }
        served = word;
      }
    }
  }
}
}  // namespace cuda_emulation

// store_shared: kCount floats of each lane into shared memory at address_of(lane) (the epilogues'
// stores of mma's sums).
template <int kCount, typename AddressOf>
void store_shared(const float (&v)[kCount], const AddressOf& address_of) {
  static_assert(kCount == 1 || kCount == 2, "one or two floats");
  cuda_emulation::check_shared_access<kCount>(address_of, "store_shared");
  std::memcpy(address_of(int(cuda_emulation::lane())), v, 4 * kCount);
}

// load_shared: a 32-bit word of each lane from shared memory at address_of(lane) (transposed
// float32 operands).
template <typename AddressOf>
unsigned load_shared(const AddressOf& address_of) {
  cuda_emulation::check_shared_access<1>(address_of, "load_shared");
  unsigned word;
  std::memcpy(&word, address_of(int(cuda_emulation::lane())), sizeof(word));
  return word;
}

inline float __uint_as_float(unsigned bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}
inline unsigned __float_as_uint(float value) {
  unsigned bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

namespace cuda_emulation {
// Element `half` of a register holding mma operands of type T: a 16-bit T's half, or for float its
// TF32 part (sign, exponent and 10 mantissa bits: the 13 low bits dropped).
template <typename T>
float mma_operand(unsigned bits, int half) {
  if constexpr (std::is_same_v<T, float>) {
    return __uint_as_float(bits & ~0x1fffu);
  } else {
    return unpack<T>(bits, half);
  }
}
}  // namespace cuda_emulation

// mma_tiles: c[i][j] += a[i] b[j] for kM x kN tiles, each mma.sync.aligned.m16n8k16.row.col.f32.
// {T}.{T}.f32 (a 16x16 A of 16-bit T by a 16x8 B, in float) or, for float registers,
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (a 16x8 A of TF32 by an 8x8 B), with the PTX
// ISA's fragments: for lane l, g = l / 4 and t = l % 4, A's registers hold (g, 2t..2t+1),
// (g+8, 2t..2t+1), (g, 2t+8..2t+9), (g+8, 2t+8..2t+9), B's (2t..2t+1, g) and (2t+8..2t+9, g) (row,
// column); TF32's one element a register: A's (g, t), (g+8, t), (g, t+4), (g+8, t+4), B's (t, g)
// and (t+4, g); C's (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1) either way. Products summed in
// float, k in order.
template <typename T, int kM, int kN>
void mma_tiles(float (&c)[kM][kN][4], const unsigned (&a)[kM][4], const unsigned (&b)[kN][2]) {
  using namespace cuda_emulation;
  static_assert(4 * kM + 2 * kN <= kMmaRegisters, "the exchange holds a lane's registers");
  constexpr int kPerRegister = std::is_same_v<T, float> ? 1 : 2, kHalfK = 4 * kPerRegister, kK = 2 * kHalfK;
  Warp& warp = this_warp();
  const unsigned l = lane();
  auto& operands = warp.operands[warp.mma_calls[l]++ % 2];
  std::memcpy(operands[l], a, sizeof(a));
  std::memcpy(operands[l] + 4 * kM, b, sizeof(b));
  warp.barrier.arrive_and_wait();
  const int g = int(l / 4), t = int(l % 4);
  for (int i = 0; i < kM; ++i) {
    for (int j = 0; j < kN; ++j) {
      const auto a_at = [&](int row, int k) {  // tile i's (row, k), from the lane and register holding it
        const unsigned bits = operands[row % 8 * 4 + k % kHalfK / kPerRegister][4 * i + row / 8 + 2 * (k / kHalfK)];
        return mma_operand<T>(bits, k % kPerRegister);
      };
      const auto b_at = [&](int k, int n) {
        const unsigned bits = operands[n * 4 + k % kHalfK / kPerRegister][4 * kM + 2 * j + k / kHalfK];
        return mma_operand<T>(bits, k % kPerRegister);
      };
      for (int e = 0; e < 4; ++e) {
        const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
        float sum = c[i][j][e];
        for (int k = 0; k < kK; ++k) sum += a_at(row, k) * b_at(k, col);
        c[i][j][e] = sum;
      }
    }
  }
}

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
  ++cuda_emulation::kernel_launches;
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

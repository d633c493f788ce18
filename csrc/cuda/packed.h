// Packed<T, kVec>: kVec consecutive elements read or written as one aligned access (one 16-byte
// vector load or store for kVec * sizeof(T) = 16). Shared by the kernel files and their CPU emulation.
#pragma once

namespace stylegan_ops {

template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Packed {
  T v[kVec];
};

}  // namespace stylegan_ops

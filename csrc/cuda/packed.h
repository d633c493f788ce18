// Packed<T, kVec>: kVec consecutive elements read or written as one aligned access (one 16-byte
// vector load or store for kVec * sizeof(T) = 16). Shared by the kernel files and their CPU emulation.
#pragma once

#include <cstring>

namespace stylegan_ops {

template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Packed {
  T v[kVec];
};

// Writes a 16-byte Packed to global memory at `to` with one vector store. Assigning the struct (or
// a uint4 copied from it) lets nvcc store its elements one by one where they were converted one by
// one: the noise_adain_lrelu kernels' bfloat16 outputs went out as 8 st.global.u16 a vector (four
// 32-bit stores in the sm_90 SASS), their float32 ones as 4 st.global.f32. This is one plain
// st.global.v4 (STG.E.128; __stwb's st.global.wb.v4 compiles to a STG.E.128.STRONG.SM).
template <typename T, int kVec>
__device__ inline void store_packed(T* to, const Packed<T, kVec>& value) {
  static_assert(sizeof(value) == 16, "a 16-byte vector");
#ifdef STYLEGAN_OPS_EMULATE_CUDA
  *reinterpret_cast<Packed<T, kVec>*>(to) = value;
#else
  unsigned bits[4];
  memcpy(bits, &value, sizeof(bits));
  asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(to), "r"(bits[0]), "r"(bits[1]), "r"(bits[2]),
               "r"(bits[3])
               : "memory");
#endif
}

}  // namespace stylegan_ops

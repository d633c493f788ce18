// A helper shared by the C++ CPU kernels.
#pragma once

#include <cstdint>
#include <type_traits>

namespace stylegan_ops {

// Calls body(stride) with a compile-time 1 when stride == 1, so that unit-stride loops vectorise.
template <typename Body>
void with_unit_stride(int64_t stride, const Body& body) {
  if (stride == 1) {
    body(std::integral_constant<int64_t, 1>());
  } else {
    body(stride);
  }
}

}  // namespace stylegan_ops

// Integer rounding for tile, block and grid counts, on the host and in kernels (v >= 0, by > 0).
#pragma once

#include <cstdint>

namespace stylegan_ops {

__host__ __device__ constexpr int64_t ceil_div(int64_t v, int64_t by) { return (v + by - 1) / by; }
__host__ __device__ constexpr int64_t round_up(int64_t v, int64_t to) { return ceil_div(v, to) * to; }

}  // namespace stylegan_ops

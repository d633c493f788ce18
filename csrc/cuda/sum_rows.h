// The last step of the CUDA kernels' deterministic reductions: float partial sums laid out as rows
// (one per block, pixel range or K share that made them) summed over the rows into the output
// dtype, in one launch. ATen would take two: a sum, then a cast (each also an operator call on the
// CPU, whose time bounds a generator step on the GPU); its sum(dtype=bfloat16) casts the float
// partials before adding them.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/util/Exception.h>

#include <cstdint>

#include "rounding.h"
#include "runtime.h"

namespace stylegan_ops {

constexpr int kSumRowsThreads = 256;

// dst[j] = Σ_r partial[r * cols + j] for j < cols, rounded once to scalar_t. A block's threads
// are `row_groups` groups of kSumRowsThreads / row_groups lanes, a lane per column: group g adds
// rows g, g + row_groups, ... in order, and group 0 then adds the groups' sums in group order.
// The order depends on `rows` alone (sum_rows_groups): bitwise the same result on every call
// and GPU.
template <typename scalar_t>
__global__ void __launch_bounds__(kSumRowsThreads)
    sum_rows_kernel(const at::opmath_type<scalar_t>* __restrict__ partial, scalar_t* __restrict__ dst, int64_t rows,
                    int64_t cols, int row_groups) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t group_sums[kSumRowsThreads];
  const int lanes = kSumRowsThreads / row_groups, lane = threadIdx.x % lanes, group = threadIdx.x / lanes;
  const int64_t j = int64_t(blockIdx.x) * lanes + lane;
  acc_t sum = 0;
  if (j < cols) {
    for (int64_t r = group; r < rows; r += row_groups) sum += partial[r * cols + j];
  }
  if (row_groups > 1) {  // the same for every thread of the grid
    group_sums[threadIdx.x] = sum;
    __syncthreads();
    if (group != 0) return;
    for (int g = 1; g < row_groups; ++g) sum += group_sums[g * lanes + lane];
  }
  if (j < cols) dst[j] = static_cast<scalar_t>(sum);
}

// How many threads share a column's rows, so that none adds more than a few dozen one after
// another: one where there are few rows (the K shares of a split phase convolution, at most 16,
// over millions of columns); 8 up to 255 rows, a warp each reading 32 consecutive columns (128
// bytes of float) of every 8th row; 32 from 256 rows, 8 columns a group (32 bytes, a memory
// sector). d noise_weight's rows are one a sample or a sample's pixel range (tens to hundreds),
// d bias's one a block of window_means_kernel (about four per SM).
inline int sum_rows_groups(int64_t rows) { return rows < 32 ? 1 : rows < 256 ? 8 : 32; }

// dst (cols elements, dense) = the column sums of `partial`, (rows, cols) dense, launched on the
// current stream.
template <typename scalar_t>
void sum_rows(const at::opmath_type<scalar_t>* partial, scalar_t* dst, int64_t rows, int64_t cols) {
  if (cols == 0) return;  // no sums (CUDA refuses an empty grid)
  const int row_groups = sum_rows_groups(rows);
  const int64_t blocks = ceil_div(cols, kSumRowsThreads / row_groups);
  TORCH_CHECK(blocks < (int64_t(1) << 31), "stylegan_ops: ", cols, " sums are too many for one grid");
  launch_kernel(sum_rows_kernel<scalar_t>, dim3(unsigned(blocks)), kSumRowsThreads, partial, dst, rows, cols,
                row_groups);
}

}  // namespace stylegan_ops

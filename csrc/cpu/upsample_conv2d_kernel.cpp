// upsample_conv2d on CPU: one GEMM over the low-resolution pixels, then a gather into the 2x output.
//
// Nearest upsampling repeats x[i, j] over output rows 2i, 2i+1 and columns 2j, 2j+1, so tap (ky, kx)
// of the 3x3 convolution at output pixel (Y, X) reads x[(Y + ky - 1) >> 1, (X + kx - 1) >> 1]
// (nothing where Y + ky - 1 or X + kx - 1 falls outside the upsampled image). Hence
//
//     y[n, o, Y, X] = bias[o] + Σ_{ky,kx} Z[o, ky, kx, n, (Y + ky - 1) >> 1, (X + kx - 1) >> 1],
//     Z[o, ky, kx, n, i, j] = Σ_c weight[o, c, ky, kx] · x[n, c, i, j]:
//
// Z is ONE GEMM, (9 C_out x C_in) @ (C_in x N H W), and each output sums 9 of its values. That is
// 9 multiply-adds per input pixel and channel pair: each product w·x is shared by the 4 outputs
// that read it. The four 2x2 phase convolutions of the GPU kernels take 16 (they share sums of taps
// within one output, not products across outputs; on tensor cores that keeps the output tile
// on chip), convolving the upsampled tensor takes 36. The gather's 9 additions per output are
// small next to the C_in multiply-adds behind each Z value.
//
// Backward is the adjoint, with dZ the gather's adjoint applied to dy (a scatter):
//
//     dZ[o, ky, kx, n, i, j] = Σ dy[n, o, Y, X] over Y ∈ {2i + 1 - ky, 2i + 2 - ky}, X ∈ {2j + 1 - kx,
//                              2j + 2 - kx} inside the output (the outputs that read x[i, j] through
//                              tap (ky, kx)),
//     dx = (9 C_out x C_in)ᵀ @ dZ,        dW = dZ @ (C_in x N H W)ᵀ,        db = Σ dy.
//
// Products are w·x as in eager (no folded taps), and taps that land on the zero padding are skipped,
// as oneDNN's float32 convolution skips them. Z and dZ are float32 for every dtype but float64 (the
// GEMMs run in the accumulation type; half and bfloat16 are rounded once, on output). They go in
// blocks of rows of x (for_each_block), so that the gather and scatter find them in cache and their
// memory stays bounded at any resolution.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../upsample_conv2d.h"
#include "unit_stride.h"

namespace stylegan_ops {
namespace {

// Z (dZ) goes in blocks of about this many bytes (or kMinBandRows rows of x), so that the gather
// (scatter) finds the GEMM's block in cache, not memory. Timed in one process, alternating: blocks of
// 0.5 to 2 MB alike; 8 MB and whole-tensor blocks up to 1.3x slower at 16x16 and 64x64 planes.
constexpr int64_t kBlockBytes = int64_t(1) << 20;

// weight (C_out, C_in, 3, 3) <-> the (9 C_out, C_in) GEMM operand "taps", row 9o + 3ky + kx. A
// channels_last weight (o, ky, kx, c) lies in memory as the taps do: a view, converted to the
// accumulation type (no copy in float32 and float64). A contiguous one: per output channel o, a
// (C_in, 9) <-> (9, C_in) transpose within the cache, the inner loop along the side written
// (contiguous). A strided copy_ of the permuted tensor took 3x a plain copy's time.
template <typename src_t, typename dst_t>
void transpose_filters(const src_t* src, dst_t* dst, int64_t C_out, int64_t C_in, bool to_taps) {
  at::parallel_for(0, C_out, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const src_t* from = src + o * C_in * 9;  // both layouts hold channel o's filters in one block
      dst_t* to = dst + o * C_in * 9;
      for (int64_t k = 0; to_taps && k < 9; ++k) {
        for (int64_t c = 0; c < C_in; ++c) to[k * C_in + c] = dst_t(from[c * 9 + k]);
      }
      for (int64_t c = 0; !to_taps && c < C_in; ++c) {
        for (int64_t k = 0; k < 9; ++k) to[c * 9 + k] = dst_t(from[k * C_in + c]);
      }
    }
  });
}

at::Tensor tap_rows(const at::Tensor& weight, at::ScalarType acc) {
  const int64_t C_out = weight.size(0), C_in = weight.size(1);
  if (weight.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return weight.permute({0, 2, 3, 1}).view({9 * C_out, C_in}).to(acc);
  }
  const at::Tensor filters = weight.contiguous();
  at::Tensor taps = at::empty({9 * C_out, C_in}, weight.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(), "upsample_conv2d_tap_rows", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    transpose_filters(filters.const_data_ptr<scalar_t>(), taps.mutable_data_ptr<acc_t>(), C_out, C_in,
                      /*to_taps=*/true);
  });
  return taps;
}

// The gradient of the weight from the gradient of taps, in the weight's dtype and memory format
// (in another, autograd would copy it into the parameter's layout).
at::Tensor filters_from_tap_rows(const at::Tensor& taps, const at::Tensor& weight) {
  const int64_t C_out = weight.size(0), C_in = weight.size(1);
  if (output_memory_format(weight) == at::MemoryFormat::ChannelsLast) {
    return taps.view({C_out, 3, 3, C_in}).permute({0, 3, 1, 2}).to(weight.scalar_type());
  }
  at::Tensor filters = at::empty(weight.sizes(), weight.options().memory_format(at::MemoryFormat::Contiguous));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(), "upsample_conv2d_filters", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    transpose_filters(taps.const_data_ptr<acc_t>(), filters.mutable_data_ptr<scalar_t>(), C_out, C_in,
                      /*to_taps=*/false);
  });
  return filters;
}

// x (N, C_in, H, W) -> the (C_in, N H W) GEMM operand: a view of a channels_last x (or of an NCHW x
// with N = 1), else one copy.
at::Tensor pixel_columns(const at::Tensor& x, at::ScalarType acc) {
  return x.transpose(0, 1).to(acc).reshape({x.size(1), -1});
}

// Low-resolution rows [r0, r1) of samples [n0, n0 + samples): one GEMM and one gather (scatter).
// Either whole samples (r0 = 0, r1 = H), as many as fit the budget, or a band of rows of one sample.
// The forward's Z holds rows [lo, hi) of each of its samples: the band and, inside x, one row on each
// side (the gather's kernel rows read them; a band recomputes its neighbours' edge rows). Z is
// (9 C_out, samples, hi - lo, W); the backward's dZ holds the band only (lo = r0, hi = r1).
struct Block {
  int64_t n0, samples, r0, r1, lo, hi;
  // The block's Z rows as columns of the (C_in, N H W) pixel matrix: contiguous in both cases.
  int64_t first_column(int64_t H, int64_t W) const { return (n0 * H + lo) * W; }
  int64_t columns(int64_t W) const { return samples * (hi - lo) * W; }
};

// A band has at least this many rows, so that recomputing its two halo rows costs at most 1/8.
constexpr int64_t kMinBandRows = 16;

template <typename F>
void for_each_block(int64_t N, int64_t C_out, int64_t H, int64_t W, at::ScalarType acc, int64_t halo,
                    const F& visit) {
  const int64_t row_bytes = 9 * C_out * W * int64_t(c10::elementSize(acc));  // Z of one row of x
  const int64_t rows = std::max(kMinBandRows, kBlockBytes / row_bytes);
  if (rows >= H) {
    const int64_t samples = std::min(N, rows / H);
    for (int64_t n0 = 0; n0 < N; n0 += samples) visit(Block{n0, std::min(samples, N - n0), 0, H, 0, H});
    return;
  }
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t r0 = 0; r0 < H; r0 += rows) {
      const int64_t r1 = std::min(r0 + rows, H);
      visit(Block{n, 1, r0, r1, std::max<int64_t>(r0 - halo, 0), std::min(r1 + halo, H)});
    }
  }
}

// Runs row(n, o, i, scratch) over every low-resolution row i of every (n, o) of a block (n counted
// from the block's first sample). The rows of one (n, o) come one after another, Z's rows and an NCHW
// output's in memory order; for a channels_last output (channels_fastest) the channel varies fastest
// instead, so that neighbouring iterations write neighbouring elements. scratch holds scratch_size
// values of the thread's own.
template <typename acc_t, typename F>
void for_each_low_res_row(const Block& block, int64_t C, int64_t W, bool channels_fastest, int64_t scratch_size,
                          const F& row) {
  const int64_t band = block.r1 - block.r0;
  at::parallel_for(0, block.samples * band * C, std::max<int64_t>(1, 2048 / W), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> scratch(scratch_size, acc_t(0));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / (band * C), o = channels_fastest ? r % C : r / band % C;
      const int64_t i = channels_fastest ? r / C % band : r % band;
      row(n, o, block.r0 + i, scratch.data());
    }
  });
}

// A 4-D tensor's data and strides.
template <typename T>
struct Strided4d {
  T* data;
  int64_t n, c, h, w;
  Strided4d(T* data, const at::Tensor& t)
      : data(data), n(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
  T* row(int64_t n_, int64_t c_, int64_t h_) const { return data + n_ * n + c_ * c + h_ * h; }
};

// y's rows 2i and 2i + 1 of every (n, o, i) of the block, from its Z (a row outside x reads zeros).
template <typename scalar_t, typename acc_t>
void gather_output(const acc_t* z, const scalar_t* bias, const Block& block, const at::Tensor& y) {
  const int64_t C = y.size(1), H = y.size(2) / 2, W = y.size(3) / 2, z_rows = block.hi - block.lo;
  const Strided4d<scalar_t> out(y.mutable_data_ptr<scalar_t>(), y);
  // scratch: a row of W zeros, then sums[a][kx] (W + 2 values each, zero at both ends) = Σ over ky
  // of Z (o, ky, kx) on the x row that ky reads for output row 2i + a. Output column 2j reads
  // sums[a][0..2] at x's columns j - 1, j, j, column 2j + 1 at j, j, j + 1.
  const int64_t stride = W + 2;
  for_each_low_res_row<acc_t>(block, C, W, /*channels_fastest=*/out.c == 1, W + 6 * stride,
                              [&](int64_t n, int64_t o, int64_t i, acc_t* scratch) {
    const acc_t* zeros = scratch;
    acc_t* sums = scratch + W + 1;  // sums[a][kx] at sums + (3a + kx) * stride
    for (int64_t kx = 0; kx < 3; ++kx) {
      const auto row = [&](int64_t ky, int64_t r) {  // Z (o, ky, kx) on x's row r
        const int64_t z_row = ((9 * o + 3 * ky + kx) * block.samples + n) * z_rows + r - block.lo;
        return r < 0 || r >= H ? zeros : z + z_row * W;
      };
      // Output row 2i reads rows i - 1, i, i through ky = 0, 1, 2; row 2i + 1 reads i, i, i + 1.
      const acc_t *__restrict__ ky0_up = row(0, i - 1), *__restrict__ ky0 = row(0, i), *__restrict__ ky1 = row(1, i);
      const acc_t *__restrict__ ky2 = row(2, i), *__restrict__ ky2_down = row(2, i + 1);
      acc_t *__restrict__ even = sums + kx * stride, *__restrict__ odd = sums + (3 + kx) * stride;
      for (int64_t j = 0; j < W; ++j) even[j] = ky0_up[j] + ky1[j] + ky2[j];
      for (int64_t j = 0; j < W; ++j) odd[j] = ky0[j] + ky1[j] + ky2_down[j];
    }
    const acc_t b = bias ? acc_t(bias[o]) : acc_t(0);
    for (int64_t a = 0; a < 2; ++a) {
      const acc_t* __restrict__ s0 = sums + 3 * a * stride;
      const acc_t *__restrict__ s1 = s0 + stride, *__restrict__ s2 = s1 + stride;
      scalar_t* __restrict__ dst = out.row(block.n0 + n, o, 2 * i + a);
      with_unit_stride(out.w, [&](auto step) {
        for (int64_t j = 0; j < W; ++j) {
          dst[2 * j * step] = scalar_t(b + s0[j - 1] + s1[j] + s2[j]);
          dst[(2 * j + 1) * step] = scalar_t(b + s0[j] + s1[j] + s2[j + 1]);
        }
      });
    }
  });
}

// The adjoint of gather_output: the block's dZ from dy. dZ (ky, kx) at x's pixel (i, j) sums dy over
// output rows 2i + 1 - ky, 2i + 2 - ky and columns 2j + 1 - kx, 2j + 2 - kx, those inside the output.
template <typename scalar_t, typename acc_t>
void scatter_grad(const at::Tensor& grad_y, const Block& block, acc_t* dz) {
  const int64_t C = grad_y.size(1), H = grad_y.size(2) / 2, W = grad_y.size(3) / 2, band = block.r1 - block.r0;
  const Strided4d<const scalar_t> dy(grad_y.const_data_ptr<scalar_t>(), grad_y);
  // scratch: dy's rows 2i - 1 .. 2i + 2 (zeros outside), then pair[ky] = the sum of ky's two rows;
  // each row holds 2W + 2 values with a zero at both ends, so that columns -1 and 2W read 0.
  const int64_t stride = 2 * W + 2;
  for_each_low_res_row<acc_t>(block, C, W, /*channels_fastest=*/dy.c == 1, 7 * stride,
                              [&](int64_t n, int64_t o, int64_t i, acc_t* scratch) {
    for (int64_t t = 0; t < 4; ++t) {  // dy's row 2i - 1 + t
      acc_t* __restrict__ to = scratch + t * stride + 1;
      const int64_t Y = 2 * i - 1 + t;
      if (Y < 0 || Y >= 2 * H) {
        std::fill_n(to, 2 * W, acc_t(0));
        continue;
      }
      const scalar_t* __restrict__ from = dy.row(block.n0 + n, o, Y);
      with_unit_stride(dy.w, [&](auto step) {
        for (int64_t X = 0; X < 2 * W; ++X) to[X] = acc_t(from[X * step]);
      });
    }
    for (int64_t ky = 0; ky < 3; ++ky) {  // rows 2i + 1 - ky and 2i + 2 - ky: t = 2 - ky and 3 - ky
      const acc_t *__restrict__ first = scratch + (2 - ky) * stride + 1, *__restrict__ second = first + stride;
      acc_t* __restrict__ pair = scratch + (4 + ky) * stride + 1;
      for (int64_t X = 0; X < 2 * W; ++X) pair[X] = first[X] + second[X];
      for (int64_t kx = 0; kx < 3; ++kx) {
        acc_t* __restrict__ tap = dz + (((9 * o + 3 * ky + kx) * block.samples + n) * band + i - block.r0) * W;
        for (int64_t j = 0; j < W; ++j) tap[j] = pair[2 * j + 1 - kx] + pair[2 * j + 2 - kx];
      }
    }
  });
}

at::Tensor upsample_conv2d_impl(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_upsample_conv2d_args(x, weight, bias);
  const int64_t N = x.size(0), C_out = weight.size(0), H = x.size(2), W = x.size(3);
  const at::ScalarType acc = at::toOpMathType(x.scalar_type());
  const at::Tensor taps = tap_rows(weight, acc), pixels = pixel_columns(x, acc);
  const at::Tensor bias_values = bias ? bias->contiguous() : at::Tensor();
  at::Tensor y =
      at::empty({N, C_out, 2 * H, 2 * W}, x.options().memory_format(conv_output_memory_format(x, weight)));
  for_each_block(N, C_out, H, W, acc, /*halo=*/1, [&](const Block& block) {
    const at::Tensor z = at::mm(taps, pixels.narrow(1, block.first_column(H, W), block.columns(W)));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "upsample_conv2d_gather", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      gather_output<scalar_t, acc_t>(z.const_data_ptr<acc_t>(),
                                     bias ? bias_values.const_data_ptr<scalar_t>() : nullptr, block, y);
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> upsample_conv2d_backward_impl(const at::Tensor& grad_y,
                                                                             const at::Tensor& x,
                                                                             const at::Tensor& weight,
                                                                             std::array<bool, 3> output_mask) {
  check_upsample_conv2d_backward_args(grad_y, x, weight);
  const int64_t N = x.size(0), C_in = x.size(1), C_out = weight.size(0), H = x.size(2), W = x.size(3);
  const at::ScalarType acc = at::toOpMathType(x.scalar_type());
  const auto acc_options = x.options().dtype(acc);
  const at::Tensor taps = output_mask[0] ? tap_rows(weight, acc) : at::Tensor();
  const at::Tensor pixels = output_mask[1] ? pixel_columns(x, acc) : at::Tensor();
  at::Tensor grad_pixels = output_mask[0] ? at::empty({C_in, N * H * W}, acc_options) : at::Tensor();
  at::Tensor grad_taps = output_mask[1] ? at::empty({9 * C_out, C_in}, acc_options) : at::Tensor();
  bool first_block = true;
  for_each_block(N, C_out, H, W, acc, /*halo=*/0, [&](const Block& block) {
    at::Tensor dz = at::empty({9 * C_out, block.columns(W)}, acc_options);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_y.scalar_type(), "upsample_conv2d_scatter", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      scatter_grad<scalar_t, acc_t>(grad_y, block, dz.mutable_data_ptr<acc_t>());
    });
    // The blocks split dx's columns, and d weight's sum over pixels: the first block writes, the next add.
    if (output_mask[0]) {
      at::Tensor grad_columns = grad_pixels.narrow(1, block.first_column(H, W), block.columns(W));
      at::mm_out(grad_columns, taps.t(), dz);
    }
    if (output_mask[1]) {
      grad_taps.addmm_(dz, pixels.narrow(1, block.first_column(H, W), block.columns(W)).t(),
                       /*beta=*/first_block ? 0 : 1);
    }
    first_block = false;
  });
  at::Tensor grad_x = not_computed(x), grad_weight = not_computed(x);
  if (output_mask[0]) {
    grad_x = at::empty_like(x, x.options().memory_format(output_memory_format(x)));
    grad_x.copy_(grad_pixels.view({C_in, N, H, W}).transpose(0, 1));
  }
  if (output_mask[1]) {
    if (first_block) grad_taps.zero_();  // no pixels (N = 0): a sum over nothing
    grad_weight = filters_from_tap_rows(grad_taps, weight);
  }
  return {grad_x, grad_weight, output_mask[2] ? grad_y.sum({0, 2, 3}) : not_computed(x)};
}

}  // namespace

TORCH_LIBRARY_IMPL(stylegan_ops, CPU, m) {
  m.impl("upsample_conv2d", &upsample_conv2d_impl);
  m.impl("upsample_conv2d_backward", &upsample_conv2d_backward_impl);
}

}  // namespace stylegan_ops

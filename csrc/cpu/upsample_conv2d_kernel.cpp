// upsample_conv2d on CPU from ATen operators: the phase decomposition runs as ONE convolution
// of the low-resolution x with 2x2 folded weights for all four phases stacked along the output
// channels (4*C_out), padding 1, then one interleaving copy into the 2x output. The upsampled
// input is never materialised: 16 multiply-adds per input pixel and channel pair on an
// (H+1) x (W+1) grid instead of 36 on 4*H*W. The convolution is oneDNN's.
//
// A 2x2 convolution of x padded by 1 has output z[p] covering x[p - 1], x[p]: phase 0 reads
// z[i], phase 1 reads z[i + 1] (the folding is in ../upsample_conv2d.h).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../upsample_conv2d.h"

namespace stylegan_ops {
namespace {

// The stacked weights never leave a call, so they live in memory this thread keeps from call to
// call. A fresh buffer of many MB page-faults on first touch: in a VM, the (4, 512, 8, 8) 512-channel
// forward took 14 to 28 ms per call with a fresh 16 MB stacked weight and a steady 14 ms with reuse.
// The buffer grows to the largest stacked weight seen on this thread; a returned tensor is valid
// until the next call on this thread.
at::Tensor stacked_weight_buffer(int64_t c_out, int64_t c_in, const at::TensorOptions& options) {
  static thread_local at::Tensor buffer;
  const int64_t bytes = 16 * c_out * c_in * int64_t(options.dtype().itemsize());
  if (!buffer.defined() || buffer.numel() < bytes) buffer = at::empty({bytes}, options.dtype(at::kByte));
  return buffer.narrow(0, 0, bytes).view(options.dtype().toScalarType()).view({4 * c_out, c_in, 2, 2});
}

// Moves every (o, c) filter pair between the 3x3 layout (C_out, C_in, 3, 3) and the stacked layout
// (4 * C_out, C_in, 2, 2), row 4o + 2a + b: to_stacked folds (fold_taps), otherwise it applies the
// adjoint (unfold_taps) to a gradient. Both contiguous; arithmetic in the accumulation type, rounded
// once. A loop over the pairs writes either layout directly, where tensor ops (stack, permute) would
// leave a transpose in 16-byte pieces that costs more than the fold.
void refold(const at::Tensor& src, at::Tensor& dst, bool to_stacked) {
  const at::Tensor& filters = to_stacked ? src : dst;
  const int64_t C_out = filters.size(0), C_in = filters.size(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "upsample_conv2d_refold", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* in = src.const_data_ptr<scalar_t>();
    scalar_t* out = dst.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, C_out, 1, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
        for (int64_t c = 0; c < C_in; ++c) {
          const int64_t filter = (o * C_in + c) * 9;
          const auto stacked = [&](int i) { return ((4 * o + i / 4) * C_in + c) * 4 + i % 4; };  // i = 4 phase + tu
          acc_t taps[9], folded[16];
          if (to_stacked) {
            for (int k = 0; k < 9; ++k) taps[k] = in[filter + k];
            fold_taps(taps, folded);
            for (int i = 0; i < 16; ++i) out[stacked(i)] = folded[i];
          } else {
            for (int i = 0; i < 16; ++i) folded[i] = in[stacked(i)];
            unfold_taps(folded, taps);
            for (int k = 0; k < 9; ++k) out[filter + k] = taps[k];
          }
        }
      }
    });
  });
}

at::Tensor stacked_phase_weight(const at::Tensor& weight) {
  at::Tensor stacked = stacked_weight_buffer(weight.size(0), weight.size(1), weight.options());
  refold(weight.contiguous(), stacked, /*to_stacked=*/true);
  return stacked;
}

at::Tensor unstack_phase_weight_grad(const at::Tensor& grad_stacked) {
  at::Tensor grad = at::empty({grad_stacked.size(0) / 4, grad_stacked.size(1), 3, 3}, grad_stacked.options());
  refold(grad_stacked.contiguous(), grad, /*to_stacked=*/false);
  return grad;
}

// The stacked phase-conv output z (N, 4 C_out, H+1, W+1), any strides, seen as the interleaved
// output (N, C_out, 2H, 2W) split into (N, C_out, H, 2, W, 2) = (n, o, i, a, j, b):
// y[n, o, 2i + a, 2j + b] = z[n, 4o + 2a + b, i + a, j + b], so the a and b strides each fold a
// channel step and a pixel step together.
at::Tensor stacked_as_output(const at::Tensor& z, int64_t h, int64_t w) {
  const int64_t c_out = z.size(1) / 4;
  return z.as_strided({z.size(0), c_out, h, 2, w, 2},
                      {z.stride(0), 4 * z.stride(1), z.stride(2), 2 * z.stride(1) + z.stride(2), z.stride(3),
                       z.stride(1) + z.stride(3)},
                      z.storage_offset());
}

at::Tensor output_as_phases(const at::Tensor& y) {
  return y.view({y.size(0), y.size(1), y.size(2) / 2, 2, y.size(3) / 2, 2});
}

// Copies between the stacked z (N, 4 C_out, H+1, W+1) and the interleaved y (N, C_out, 2H, 2W):
// into y when to_output, else y's values into z's phase positions (z's unread border untouched).
// A strided copy_ between stacked_as_output and output_as_phases serves any layout, and
// channels_last well (its inner loop runs over channels); for NCHW its innermost dimension is b,
// of size 2 (1.2 ms for the 8 MB (2, 64, 128, 128) output). There an output row 2i + a is one loop
// that interleaves z's rows of phases (a, 0) and (a, 1), contiguous on both sides: the
// (2, 64, 64, 64, 64) forward went from 6.6 to 5.8 ms, its backward from 13.7 to 12.6 ms.
void move_phases(const at::Tensor& z, const at::Tensor& y, bool to_output) {
  const int64_t C_out = y.size(1), H = y.size(2) / 2, W = y.size(3) / 2, rows = y.size(0) * C_out * 2 * H;
  TORCH_INTERNAL_ASSERT(z.sizes() == at::IntArrayRef({y.size(0), 4 * C_out, H + 1, W + 1}),
                        "upsample_conv2d: stacked output ", z.sizes(), " does not match output ", y.sizes());
  if (!z.is_contiguous() || !y.is_contiguous()) {
    if (to_output) {
      output_as_phases(y).copy_(stacked_as_output(z, H, W));
    } else {
      stacked_as_output(z, H, W).copy_(output_as_phases(y));
    }
    return;
  }
  const int64_t z_plane = (H + 1) * (W + 1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "upsample_conv2d_move_phases", [&] {
    // The source is read through const_data_ptr: a copy-on-write input stays shared.
    const scalar_t* from = to_output ? z.const_data_ptr<scalar_t>() : y.const_data_ptr<scalar_t>();
    scalar_t* to = to_output ? y.mutable_data_ptr<scalar_t>() : z.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / W), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {  // row = (n * C_out + o) * 2H + 2i + a
        const int64_t no = row / (2 * H), r = row % (2 * H), i = r / 2, a = r % 2;
        const int64_t n = no / C_out, o = no % C_out;
        const int64_t even = (n * 4 * C_out + 4 * o + 2 * a) * z_plane + (i + a) * (W + 1);  // z at b = 0
        const int64_t odd = even + z_plane + 1;                                             // z at b = 1
        const int64_t out = row * 2 * W;                                                    // y
        if (to_output) {
          for (int64_t j = 0; j < W; ++j) {
            to[out + 2 * j] = from[even + j];
            to[out + 2 * j + 1] = from[odd + j];
          }
        } else {
          for (int64_t j = 0; j < W; ++j) {
            to[even + j] = from[out + 2 * j];
            to[odd + j] = from[out + 2 * j + 1];
          }
        }
      }
    });
  });
}

at::Tensor upsample_conv2d_impl(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_upsample_conv2d_args(x, weight, bias);
  const int64_t N = x.size(0), C_out = weight.size(0), H = x.size(2), W = x.size(3);
  const std::optional<at::Tensor> stacked_bias =
      bias ? std::optional<at::Tensor>(bias->repeat_interleave(4)) : std::nullopt;
  const at::Tensor z = at::conv2d(x, stacked_phase_weight(weight), stacked_bias, /*stride=*/1, /*padding=*/1);
  at::Tensor y =
      at::empty({N, C_out, 2 * H, 2 * W}, x.options().memory_format(conv_output_memory_format(x, weight)));
  move_phases(z, y, /*to_output=*/true);
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> upsample_conv2d_backward_impl(const at::Tensor& grad_y,
                                                                             const at::Tensor& x,
                                                                             const at::Tensor& weight,
                                                                             std::array<bool, 2> output_mask) {
  check_upsample_conv2d_backward_args(grad_y, x, weight);
  const int64_t N = x.size(0), C_out = weight.size(0), H = x.size(2), W = x.size(3);
  // Scatter dy into the stacked layout; the border row/column of each phase no output reads stays 0.
  at::Tensor grad_z = at::zeros({N, 4 * C_out, H + 1, W + 1}, x.options().memory_format(output_memory_format(x)));
  move_phases(grad_z, grad_y, /*to_output=*/false);
  auto [grad_x, grad_stacked, unused] = at::convolution_backward(
      grad_z, x, stacked_phase_weight(weight), /*bias_sizes=*/std::nullopt, /*stride=*/{1, 1}, /*padding=*/{1, 1},
      /*dilation=*/{1, 1}, /*transposed=*/false, /*output_padding=*/{0, 0}, /*groups=*/1,
      {output_mask[0], output_mask[1], false});
  return {output_mask[0] ? grad_x : not_computed(x),
          output_mask[1] ? unstack_phase_weight_grad(grad_stacked) : not_computed(x), grad_y.sum({0, 2, 3})};
}

}  // namespace

TORCH_LIBRARY_IMPL(stylegan_ops, CPU, m) {
  m.impl("upsample_conv2d", &upsample_conv2d_impl);
  m.impl("upsample_conv2d_backward", &upsample_conv2d_backward_impl);
}

}  // namespace stylegan_ops

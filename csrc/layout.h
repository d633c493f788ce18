// Layout rules shared by every op's kernels. stylegan_ops/ops/_layout.py mirrors them for fake
// tensors, eager twins and the Triton launchers: a rule that differed would make a compiled graph
// assume strides the kernels do not write.
#pragma once

#include <ATen/ATen.h>

namespace stylegan_ops {

// An output takes x's memory format as PyTorch reads it from the strides (suggest_memory_format):
// channels_last for a channels_last tensor and for slices of one, else contiguous.
inline at::MemoryFormat output_memory_format(const at::Tensor& x) {
  return x.suggest_memory_format();
}

// Channels are t's innermost (fastest-moving) dimension, as in channels_last: the layout the
// kernels walk channel-fastest.
inline bool channels_innermost(const at::Tensor& t) { return t.size(1) > 1 && t.stride(1) == 1; }

// A convolution's output is channels_last when its input or its weight is, as at::conv2d's (cuDNN
// float64 aside, which stays contiguous).
inline at::MemoryFormat conv_output_memory_format(const at::Tensor& x, const at::Tensor& weight) {
  return output_memory_format(weight) == at::MemoryFormat::ChannelsLast ? at::MemoryFormat::ChannelsLast
                                                                         : output_memory_format(x);
}

}  // namespace stylegan_ops

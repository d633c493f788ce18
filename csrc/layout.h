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

// A convolution's output is channels_last when its input or its weight is, as at::conv2d's (cuDNN
// float64 aside, which stays contiguous).
inline at::MemoryFormat conv_output_memory_format(const at::Tensor& x, const at::Tensor& weight) {
  return output_memory_format(weight) == at::MemoryFormat::ChannelsLast ? at::MemoryFormat::ChannelsLast
                                                                         : output_memory_format(x);
}

}  // namespace stylegan_ops

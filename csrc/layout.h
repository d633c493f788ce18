// Layout rule shared by every op's kernels.
#pragma once

#include <ATen/ATen.h>

namespace stylegan_ops {

// Outputs take x's layout: channels_last when x is (and is not also plain contiguous), else
// contiguous. stylegan_ops/ops/_layout.py mirrors this rule for fake tensors and eager twins.
inline at::MemoryFormat output_memory_format(const at::Tensor& x) {
  return x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous() ? at::MemoryFormat::ChannelsLast
                                                                               : at::MemoryFormat::Contiguous;
}

}  // namespace stylegan_ops

// Whether this build's CUDA kernels can run on a device: stylegan_ops.backends asks before it picks
// the native backend for CUDA tensors (the Python side is stylegan_ops/_extension.py).
#pragma once

#include <string>

namespace stylegan_ops {

// "" when the device can load this build's kernels (a cubin for its architecture, or PTX the driver
// compiles for it), else the CUDA runtime's error, as text: a build for other architectures fails
// only at its first launch ("no kernel image is available for execution on the device"), too late
// for backend="auto" to pass over it. Never throws and leaves no CUDA error behind.
std::string cuda_kernel_image_error(int device);

}  // namespace stylegan_ops

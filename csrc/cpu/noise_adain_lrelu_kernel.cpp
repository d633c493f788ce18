// noise_adain_lrelu on CPU: at::parallel_for over (n, c) planes, small planes in groups
// (planes_per_group); with channels innermost (channels_last), over blocks of 32 channels of a
// sample instead. ForwardPass and BackwardPass hold each direction's two kernels, by_planes and
// by_channel_blocks.
//
// The forward gathers each plane of v = x + a * noise once (any layout, any floating dtype) into a
// contiguous buffer in the op-math type (float for half/bfloat16/float, double for double) and
// computes statistics and output from it with at::vec::Vectorized. The backward reads x, noise and
// dy where they lie when they are contiguous in the op-math type (else converts them once into
// buffers) and recomputes v in each of its two sweeps; y and dx are written in place likewise.
// Statistics take two passes: the first sums deviations from the plane's first value for a mean m
// (a large common offset never enters a float sum), the second deviations from m and their
// squares, which correct m and give the variance (corrected_moments); sums go through float chunks
// flushed into double.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../noise_adain_lrelu.h"
#include "unit_stride.h"

namespace stylegan_ops {
namespace {

using at::vec::Vectorized;

// A sum of vectors whose lanes add up in acc_t for kFlushEvery vectors, then flush into a
// double total: float32 sums over a 1024x1024 plane stay accurate, at vector speed. A flush
// reduces the lanes with in-register shuffles before the one conversion to double; the lanes left
// at the end are reduced by total(), or by totals() for several sums at once.
template <typename acc_t>
class VecSum {
 public:
  using Vec = Vectorized<acc_t>;
  static constexpr int64_t kLanes = Vec::size();

  void add(Vec v) {
    lanes_ += v;
    if (++pending_ == kFlushEvery) flush();
  }
  void add(acc_t s) { total_ += s; }
  // Adds another sum into this one, lanes to lanes: one lane reduction where two totals would take
  // two (at 64-element planes the reductions cost as much as the adds). Up to 2 kFlushEvery vectors
  // then wait in the lanes, still a bounded float sum.
  void merge(const VecSum& other) {
    lanes_ += other.lanes_;
    total_ += other.total_;
  }

  double total() {
    flush();
    return total_;
  }

  // The totals of sums[0 .. count), count <= kLanes, as one vector (lane p: sums[p]'s total): one
  // kLanes x kLanes transpose and kLanes adds reduce the lanes of all of them. A small plane's
  // statistics are a chain of dependent steps (mean, then the squared deviations, then a square
  // root) whose lane reductions, divisions and square root the core overlaps with the next
  // plane's only as far as its reorder window reaches; reduced together, a group's planes pay one
  // vector division and square root (8x8 planes, one thread: forward 155 -> 131 us against
  // reducing plane by plane). The backward's sums do not wait on each other, so it keeps total().
  static Vec totals(const VecSum* sums, int64_t count) {
    acc_t rows[kLanes * kLanes], columns[kLanes * kLanes], flushed[kLanes];
    for (int64_t p = 0; p < kLanes; ++p) {
      (p < count ? sums[p].lanes_ : Vec(acc_t(0))).store(rows + p * kLanes);
      flushed[p] = p < count ? acc_t(sums[p].total_) : acc_t(0);
    }
    at::vec::transpose_mxn<acc_t, kLanes, kLanes>(rows, kLanes, columns, kLanes);
    Vec total = Vec::loadu(flushed);
    for (int64_t k = 0; k < kLanes; ++k) total += Vec::loadu(columns + k * kLanes);
    return total;
  }

 private:
  static constexpr int kFlushEvery = 64;
  void flush() {
    total_ += at::vec::vec_reduce_all<acc_t>([](auto a, auto b) { return a + b; }, lanes_);
    lanes_ = Vec(acc_t(0));
    pending_ = 0;
  }
  Vec lanes_ = Vec(acc_t(0));
  double total_ = 0;
  int pending_ = 0;
};

// Σ over [0, M) of K terms given per vector (vec_terms(i), an array of K vectors, covers i .. i+L-1)
// and per element for the tail (scalar_terms(i)), each in two independent sums so that consecutive
// vector adds do not wait on each other.
template <typename acc_t, typename VecTerms, typename ScalarTerms>
auto chunked_sums(int64_t M, const VecTerms& vec_terms, const ScalarTerms& scalar_terms) {
  constexpr int64_t L = Vectorized<acc_t>::size();
  constexpr size_t K = std::tuple_size_v<decltype(vec_terms(int64_t(0)))>;
  std::array<VecSum<acc_t>, K> even, odd;
  const auto add = [](std::array<VecSum<acc_t>, K>& sums, const auto& terms) {
    for (size_t k = 0; k < K; ++k) sums[k].add(terms[k]);
  };
  int64_t i = 0;
  for (; i + 2 * L <= M; i += 2 * L) {
    add(even, vec_terms(i));
    add(odd, vec_terms(i + L));
  }
  if (i + L <= M) {
    add(even, vec_terms(i));
    i += L;
  }
  for (; i < M; ++i) add(odd, scalar_terms(i));
  for (size_t k = 0; k < K; ++k) even[k].merge(odd[k]);
  return even;
}

// Branch-free (the sign of z is a coin flip, a branch mispredicts half the time); NaN stays NaN.
template <typename Vec>
Vec leaky_relu(Vec z, Vec slope) {
  return Vec::blendv(z * slope, z, z > Vec(0));
}

// g = dy where z = gamma * xhat + beta > 0, else dy * slope: the gradient through the LeakyReLU.
template <typename Vec>
Vec leaky_relu_grad(Vec dy, Vec xhat, Vec gamma, Vec beta, Vec slope) {
  return Vec::blendv(dy * slope, dy, gamma * xhat + beta > Vec(0));
}

// v[i] = x[i] + a * noise[i] for one plane, into a contiguous op-math buffer.
template <typename scalar_t, typename acc_t>
void gather_plane(const scalar_t* x, int64_t x_hw, const scalar_t* noise, int64_t noise_hw, acc_t a, int64_t M,
                  acc_t* v) {
  if (noise == nullptr) {
    with_unit_stride(x_hw, [&](auto xs) {
      for (int64_t i = 0; i < M; ++i) v[i] = acc_t(x[i * xs]);
    });
  } else if (x_hw == 1 && noise_hw == 1) {
    for (int64_t i = 0; i < M; ++i) v[i] = acc_t(x[i]) + a * acc_t(noise[i]);
  } else {
    for (int64_t i = 0; i < M; ++i) v[i] = acc_t(x[i * x_hw]) + a * acc_t(noise[i * noise_hw]);
  }
}

// Whether a plane of this element stride is usable where it lies: contiguous, in the op-math type.
template <typename scalar_t, typename acc_t>
bool in_place(int64_t hw_stride) {
  return std::is_same_v<scalar_t, acc_t> && hw_stride == 1;
}

// A plane in the op-math type, contiguous: the plane itself where it already is, else gathered
// (converted) into buf.
template <typename scalar_t, typename acc_t>
const acc_t* contiguous_plane(const scalar_t* plane, int64_t hw, int64_t M, acc_t* buf) {
  if (in_place<scalar_t, acc_t>(hw)) return reinterpret_cast<const acc_t*>(plane);
  with_unit_stride(hw, [&](auto s) {
    for (int64_t i = 0; i < M; ++i) buf[i] = acc_t(plane[i * s]);
  });
  return buf;
}

// out[i * out_hw] = values[i], converting: a plane computed in the op-math type, stored.
template <typename scalar_t, typename acc_t>
void store_plane(const acc_t* values, int64_t M, scalar_t* out, int64_t out_hw) {
  with_unit_stride(out_hw, [&](auto os) {
    for (int64_t i = 0; i < M; ++i) out[i * os] = scalar_t(values[i]);
  });
}

// out[i * out_hw] = f(in[i]) over one plane, f on vectors: written directly where out is contiguous
// in the op-math type, else into buf (which may be in) and stored from there.
template <typename scalar_t, typename acc_t, typename F>
void write_plane(const F& f, const acc_t* in, int64_t M, acc_t* buf, scalar_t* out, int64_t out_hw) {
  if (in_place<scalar_t, acc_t>(out_hw)) {
    at::vec::map(f, reinterpret_cast<acc_t*>(out), in, M);
    return;
  }
  at::vec::map(f, buf, in, M);
  store_plane(buf, M, out, out_hw);
}

// 1 / sqrt(variance + eps); as PyTorch's batch_norm (so instance_norm), with eps = 0 a constant
// plane normalises to 0, not 0 / 0.
template <typename Vec, typename acc_t>
Vec rstd_of(Vec variance, acc_t eps) {
  const Vec rstd = Vec(acc_t(1)) / (variance + Vec(eps)).sqrt();
  return eps == acc_t(0) ? Vec::blendv(rstd, Vec(acc_t(0)), variance == Vec(acc_t(0))) : rstd;
}

// The corrected two-pass algorithm (Chan, Golub and LeVeque, 1983): from m, a first estimate of a
// plane's mean, and the sums of the deviations d = v - m and of d² over its M values, the mean
// m + Σd/M and the biased variance Σd²/M - (Σd/M)² (0 where rounding leaves it negative; NaN
// stays). m itself sums deviations from the plane's first value, in float chunks: with that value
// far out they are all large, and an outlier of 1e4 in a 1024x1024 plane left m 2.3e-5 of y's
// relative error off; the d are as small as the plane's spread, and Σd/M takes that error out.
template <typename T>
void corrected_moments(T& mean, T& variance, T first_mean, T sum, T squares, T M) {
  const T correction = sum / M;
  mean = first_mean + correction;
  variance = squares / M - correction * correction;
  variance = T::blendv(variance, T(0), variance < T(0));
}

// Mean and rstd = 1 / sqrt(biased variance + eps), 0 where both are 0, of count <=
// Vectorized<acc_t>::size() planes of M elements stored back to back in v, by corrected_moments:
// a first pass for m, a second for the deviations from it.
template <typename acc_t>
void group_statistics(const acc_t* v, int64_t M, int64_t count, acc_t eps, acc_t* mean_out, acc_t* rstd_out) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t L = Vec::size();
  VecSum<acc_t> sums[L], squares[L];
  acc_t first_mean[L] = {};
  for (int64_t p = 0; p < count; ++p) {
    const acc_t* vp = v + p * M;
    const acc_t first = first_mean[p] = vp[0];
    const Vec first_vec(first);
    sums[p] = chunked_sums<acc_t>(
        M, [&](int64_t i) { return std::array{Vec::loadu(vp + i) - first_vec}; },
        [&](int64_t i) { return std::array{vp[i] - first}; })[0];
  }
  (Vec::loadu(first_mean) + VecSum<acc_t>::totals(sums, count) / Vec(acc_t(M))).store(first_mean, count);
  for (int64_t p = 0; p < count; ++p) {
    const acc_t* vp = v + p * M;
    const acc_t m = first_mean[p];
    const Vec m_vec(m);
    const auto [sum, square_sum] = chunked_sums<acc_t>(
        M,
        [&](int64_t i) {
          const Vec d = Vec::loadu(vp + i) - m_vec;
          return std::array{d, d * d};
        },
        [&](int64_t i) { return std::array{vp[i] - m, (vp[i] - m) * (vp[i] - m)}; });
    sums[p] = sum;
    squares[p] = square_sum;
  }
  Vec mean, variance;
  corrected_moments(mean, variance, Vec::loadu(first_mean), VecSum<acc_t>::totals(sums, count),
                    VecSum<acc_t>::totals(squares, count), Vec(acc_t(M)));
  mean.store(mean_out, count);
  rstd_of(variance, eps).store(rstd_out, count);
}

// Planes handled as one group, at most one per vector lane (for VecSum::totals). Computing a group's
// statistics or sums back to back, before any of its planes is written, puts several planes'
// dependent steps in flight (8x8 planes, one thread: the backward about 15% faster than plane by
// plane). A group's buffer holds at most 2048 elements (8 KiB of float32, in L1); planes of 2048
// elements or more go alone.
template <typename acc_t>
int64_t planes_per_group(int64_t M) {
  return std::clamp<int64_t>(2048 / M, 1, Vectorized<acc_t>::size());
}

// A forward call's tensors as its two kernels read them, unpacked once: sizes, (N, C, H*W) plane
// views and data pointers (noise_ptr null without noise). by_planes is the kernel for planes
// contiguous along H*W, by_channel_blocks the one for channels innermost (channels_last). Each
// kernel first copies the members into locals (a structured binding of *this): the vector stores
// through the data pointers may alias *this, so members read in a loop are reloaded after every
// store (channels_last, float32, forward 0.55 -> 1.0 ms at (2, 32, 128, 128) reading members).
template <typename scalar_t>
struct ForwardPass {
  using acc_t = at::opmath_type<scalar_t>;
  ForwardPass(const at::Tensor& x, const std::optional<at::Tensor>& noise, const at::Tensor& noise_weight,
              const at::Tensor& style_scale, const at::Tensor& style_bias, double eps, double negative_slope,
              at::Tensor& y, at::Tensor& mean, at::Tensor& rstd)
      : N(x.size(0)), C(x.size(1)), M(x.size(2) * x.size(3)), xv(plane_view(x)), yv(plane_view(y)),
        nv(noise ? plane_view(*noise) : PlaneView{0, 0, 0}), x_ptr(x.const_data_ptr<scalar_t>()),
        noise_ptr(noise ? noise->const_data_ptr<scalar_t>() : nullptr),
        a_ptr(noise_weight.const_data_ptr<scalar_t>()), scale_ptr(style_scale.const_data_ptr<scalar_t>()),
        bias_ptr(style_bias.const_data_ptr<scalar_t>()), y_ptr(y.mutable_data_ptr<scalar_t>()),
        mean_ptr(mean.mutable_data_ptr<acc_t>()), rstd_ptr(rstd.mutable_data_ptr<acc_t>()), eps(eps),
        negative_slope(negative_slope) {}
  void by_planes() const;
  void by_channel_blocks() const;

  int64_t N, C, M;
  PlaneView xv, yv, nv;
  const scalar_t *x_ptr, *noise_ptr, *a_ptr, *scale_ptr, *bias_ptr;
  scalar_t* y_ptr;
  acc_t *mean_ptr, *rstd_ptr;
  double eps, negative_slope;
};

// The backward's likewise. grad_noise_partial, when given, is (N, partial sums per sample, H*W):
// each task's Σ_c a_c dv_c (grad_noise_partials).
template <typename scalar_t>
struct BackwardPass {
  using acc_t = at::opmath_type<scalar_t>;
  BackwardPass(const at::Tensor& grad_y, const at::Tensor& x, const std::optional<at::Tensor>& noise,
               const at::Tensor& noise_weight, const at::Tensor& style_scale, const at::Tensor& style_bias,
               const at::Tensor& mean, const at::Tensor& rstd, double negative_slope, at::Tensor& grad_x,
               at::Tensor* grad_noise_partial, at::Tensor& grad_noise_weight_per_plane, at::Tensor& grad_scale,
               at::Tensor& grad_bias)
      : N(x.size(0)), C(x.size(1)), M(x.size(2) * x.size(3)), xv(plane_view(x)), gyv(plane_view(grad_y)),
        gxv(plane_view(grad_x)), nv(noise ? plane_view(*noise) : PlaneView{0, 0, 0}),
        x_ptr(x.const_data_ptr<scalar_t>()), gy_ptr(grad_y.const_data_ptr<scalar_t>()),
        noise_ptr(noise ? noise->const_data_ptr<scalar_t>() : nullptr),
        a_ptr(noise_weight.const_data_ptr<scalar_t>()), scale_ptr(style_scale.const_data_ptr<scalar_t>()),
        bias_ptr(style_bias.const_data_ptr<scalar_t>()), mean_ptr(mean.const_data_ptr<acc_t>()),
        rstd_ptr(rstd.const_data_ptr<acc_t>()), gx_ptr(grad_x.mutable_data_ptr<scalar_t>()),
        gn_ptr(grad_noise_partial != nullptr ? grad_noise_partial->mutable_data_ptr<acc_t>() : nullptr),
        ga_ptr(grad_noise_weight_per_plane.mutable_data_ptr<acc_t>()),
        gscale_ptr(grad_scale.mutable_data_ptr<scalar_t>()), gbias_ptr(grad_bias.mutable_data_ptr<scalar_t>()),
        negative_slope(negative_slope) {}
  void by_planes() const;
  void by_channel_blocks() const;

  int64_t N, C, M;
  PlaneView xv, gyv, gxv, nv;
  const scalar_t *x_ptr, *gy_ptr, *noise_ptr, *a_ptr, *scale_ptr, *bias_ptr;
  const acc_t *mean_ptr, *rstd_ptr;
  scalar_t* gx_ptr;
  acc_t *gn_ptr, *ga_ptr;
  scalar_t *gscale_ptr, *gbias_ptr;
  double negative_slope;
};

template <typename scalar_t>
void ForwardPass<scalar_t>::by_planes() const {
  const auto [N, C, M, xv, yv, nv, x_ptr, noise_ptr, a_ptr, scale_ptr, bias_ptr, y_ptr, mean_ptr, rstd_ptr, eps,
              negative_slope] = *this;
  using Vec = Vectorized<acc_t>;
  const Vec slope_v = Vec(acc_t(negative_slope));

  const int64_t group = planes_per_group<acc_t>(M);
  at::parallel_for(0, N * C, std::max<int64_t>(1, 32768 / M), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> v(group * M);
    for (int64_t first = begin; first < end; first += group) {
      const int64_t last = std::min(first + group, end);
      for (int64_t plane = first; plane < last; ++plane) {
        const int64_t n = plane / C, c = plane % C;
        gather_plane(x_ptr + n * xv.n_stride + c * xv.c_stride, xv.hw_stride,
                     noise_ptr ? noise_ptr + n * nv.n_stride : nullptr, nv.hw_stride, acc_t(a_ptr[c]), M,
                     v.data() + (plane - first) * M);
      }
      group_statistics(v.data(), M, last - first, acc_t(eps), mean_ptr + first, rstd_ptr + first);
      for (int64_t plane = first; plane < last; ++plane) {
        const int64_t n = plane / C, c = plane % C;
        acc_t* vp = v.data() + (plane - first) * M;
        const Vec mean_v = Vec(mean_ptr[plane]), gamma_v = Vec(acc_t(scale_ptr[plane]) * rstd_ptr[plane]);
        const Vec beta_v = Vec(acc_t(bias_ptr[plane]));
        write_plane([&](Vec x) { return leaky_relu((x - mean_v) * gamma_v + beta_v, slope_v); }, vp, M, vp,
                    y_ptr + n * yv.n_stride + c * yv.c_stride, yv.hw_stride);
      }
    }
  });
}

// The backward's tasks: (sample n, a run of `channels` channels), `per_sample` of them per sample.
// They are fixed by the shape alone, so grad_noise's sums over channels (in channel order within
// a task, then over a sample's tasks in order) are the same whatever the thread count:
// deterministic. Each task keeps an M-element partial sum of grad_noise; at least 8 channels a
// task hold those partials to an eighth of x's size.
struct BackwardTasks {
  int64_t channels, per_sample;
};

inline BackwardTasks backward_tasks(int64_t C, int64_t M, bool grad_noise) {
  const int64_t channels = std::max<int64_t>(1, std::min(C, std::max<int64_t>(grad_noise ? 8 : 1, 16384 / M)));
  return {channels, (C + channels - 1) / channels};
}

// Calls body(i, count) over a plane of M elements a vector at a time: count is Vec::size() but in a
// last, partial vector, whose loads (Vec::loadu(p, count)) zero the missing lanes and whose stores
// leave them alone.
template <typename Vec, typename Body>
void for_each_vector(int64_t M, const Body& body) {
  int64_t i = 0;
  for (; i + Vec::size() <= M; i += Vec::size()) body(i, int64_t(Vec::size()));
  if (i < M) body(i, M - i);
}

// Each plane takes two sweeps over x, noise and dy, read where they lie (converted once into
// buffers only when not contiguous in the op-math type): the first sums g and g x̂, the second
// writes dv and adds up the noise's gradients in the same pass. The second recomputes v = x + a
// noise, x̂ and g, a few multiply-adds a vector, instead of reading them back from buffers the first
// would have written: the stores and loads it saves cost more than the arithmetic. One thread,
// float32, best of three alternating runs against reading back x̂ and g: (8, 512, 8, 8) 0.195 ->
// 0.152 ms, (4, 128, 64, 64) 2.59 -> 1.60 ms, (2, 32, 128, 128) 0.77 -> 0.47 ms.
template <typename scalar_t>
void BackwardPass<scalar_t>::by_planes() const {
  const auto [N, C, M, xv, gyv, gxv, nv, x_ptr, gy_ptr, noise_ptr, a_ptr, scale_ptr, bias_ptr, mean_ptr, rstd_ptr,
              gx_ptr, gn_ptr, ga_ptr, gscale_ptr, gbias_ptr, negative_slope] = *this;
  using Vec = Vectorized<acc_t>;
  constexpr int64_t L = Vec::size();
  const Vec slope_v = Vec(acc_t(negative_slope));
  const int64_t group = planes_per_group<acc_t>(M);
  const BackwardTasks tasks = backward_tasks(C, M, gn_ptr != nullptr);
  const int64_t grain = std::max<int64_t>(1, 16384 / (tasks.channels * M));
  // A plane's noise weight, statistics and style as vectors, read once per sweep of it.
  struct PlaneConstants {
    Vec a, mean, rstd, gamma, beta;
  };
  const auto constants_of = [&](int64_t plane) {
    const int64_t c = plane % C;
    return PlaneConstants{Vec(acc_t(a_ptr[c])), Vec(mean_ptr[plane]), Vec(rstd_ptr[plane]),
                          Vec(acc_t(scale_ptr[plane])), Vec(acc_t(bias_ptr[plane]))};
  };

  const auto run = [&](auto with_noise) {
    at::parallel_for(0, N * tasks.per_sample, grain, [&](int64_t task_begin, int64_t task_end) {
      // Conversion buffers, only for what is not already contiguous in the op-math type: a group's
      // x and dy planes, one dx plane, the sample's noise plane.
      std::vector<acc_t> x_buf(in_place<scalar_t, acc_t>(xv.hw_stride) ? 0 : group * M);
      std::vector<acc_t> dy_buf(in_place<scalar_t, acc_t>(gyv.hw_stride) ? 0 : group * M);
      std::vector<acc_t> dx_buf(in_place<scalar_t, acc_t>(gxv.hw_stride) ? 0 : M);
      std::vector<acc_t> noise_buf(with_noise && !in_place<scalar_t, acc_t>(nv.hw_stride) ? M : 0);
      for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t n = task / tasks.per_sample, c_begin = task % tasks.per_sample * tasks.channels;
        const int64_t begin = n * C + c_begin, end = n * C + std::min(C, c_begin + tasks.channels);
        const acc_t* nz = nullptr;
        if constexpr (with_noise) nz = contiguous_plane(noise_ptr + n * nv.n_stride, nv.hw_stride, M, noise_buf.data());
        acc_t* grad_noise_sum = gn_ptr != nullptr ? gn_ptr + task * M : nullptr;
        if (grad_noise_sum != nullptr) std::fill_n(grad_noise_sum, M, acc_t(0));
        // v = x + a noise of one vector of a plane (a: the plane's noise weight).
        const auto load_v = [&](const acc_t* xp, Vec a, int64_t i, int64_t count) {
          const Vec xi = Vec::loadu(xp + i, count);
          if constexpr (with_noise) {
            return xi + a * Vec::loadu(nz + i, count);
          } else {
            return xi;
          }
        };
        for (int64_t first = begin; first < end; first += group) {
          const int64_t last = std::min(first + group, end);
          const acc_t* xs[L];
          const acc_t* dys[L];
          acc_t sum_g[L], sum_g_xhat[L];
          for (int64_t plane = first; plane < last; ++plane) {  // the group's sums, back to back
            const int64_t c = plane % C, slot = plane - first;
            const acc_t* xp = xs[slot] = contiguous_plane(x_ptr + n * xv.n_stride + c * xv.c_stride, xv.hw_stride, M,
                                                          x_buf.data() + slot * M);
            const acc_t* dy = dys[slot] = contiguous_plane(gy_ptr + n * gyv.n_stride + c * gyv.c_stride,
                                                           gyv.hw_stride, M, dy_buf.data() + slot * M);
            const auto [a_v, mean_v, rstd_v, gamma_v, beta_v] = constants_of(plane);
            VecSum<acc_t> sum_g_acc, sum_g_xhat_acc;
            for_each_vector<Vec>(M, [&](int64_t i, int64_t count) {
              const Vec xh = (load_v(xp, a_v, i, count) - mean_v) * rstd_v;
              const Vec g = leaky_relu_grad(Vec::loadu(dy + i, count), xh, gamma_v, beta_v, slope_v);
              sum_g_acc.add(Vec::set(Vec(acc_t(0)), g, count));
              sum_g_xhat_acc.add(Vec::set(Vec(acc_t(0)), g * xh, count));
            });
            sum_g[slot] = acc_t(sum_g_acc.total());
            sum_g_xhat[slot] = acc_t(sum_g_xhat_acc.total());
          }
          for (int64_t plane = first; plane < last; ++plane) {
            const int64_t c = plane % C, slot = plane - first;
            const acc_t* xp = xs[slot];
            const acc_t* dy = dys[slot];
            const auto [a_v, mean_v, rstd_v, gamma_v, beta_v] = constants_of(plane);
            // dv = gamma * rstd * (g - mean(g) - x̂ mean(g x̂))
            const Vec k_v = gamma_v * rstd_v;
            const Vec mean_g_v = Vec(sum_g[slot] / M), mean_g_xhat_v = Vec(sum_g_xhat[slot] / M);
            scalar_t* dx = gx_ptr + n * gxv.n_stride + c * gxv.c_stride;
            acc_t* dv_out = in_place<scalar_t, acc_t>(gxv.hw_stride) ? reinterpret_cast<acc_t*>(dx) : dx_buf.data();
            VecSum<acc_t> dv_dot_noise;
            for_each_vector<Vec>(M, [&](int64_t i, int64_t count) {
              const Vec xh = (load_v(xp, a_v, i, count) - mean_v) * rstd_v;
              const Vec g = leaky_relu_grad(Vec::loadu(dy + i, count), xh, gamma_v, beta_v, slope_v);
              const Vec dv = k_v * (g - mean_g_v - xh * mean_g_xhat_v);
              dv.store(dv_out + i, count);
              if constexpr (with_noise) {
                if (grad_noise_sum != nullptr) {
                  (Vec::loadu(grad_noise_sum + i, count) + a_v * dv).store(grad_noise_sum + i, count);
                }
                dv_dot_noise.add(Vec::set(Vec(acc_t(0)), dv * Vec::loadu(nz + i, count), count));
              }
            });
            if (dv_out == dx_buf.data()) store_plane(dv_out, M, dx, gxv.hw_stride);
            ga_ptr[plane] = acc_t(dv_dot_noise.total());
            gscale_ptr[plane] = scalar_t(sum_g_xhat[slot]);
            gbias_ptr[plane] = scalar_t(sum_g[slot]);
          }
        }
      }
    });
  };
  if (noise_ptr != nullptr) {
    run(std::true_type());
  } else {
    run(std::false_type());
  }
}

// ---- channels innermost (channels_last, or a channel slice of it): by blocks of channels ---------
// There a plane's elements lie C apart, and a plane-by-plane gather takes a cache line per element.
// Here a task takes kBlockChannels channels of one sample instead: a row of them per pixel, one
// vector lane per channel, so each statistic is a lane-wise sum (no reduction across lanes) and
// each pass reads whole rows. x is swept three times (mean, variance, output) and the backward's
// x and dy twice, the later sweeps from cache (a task's rows: 32 x H*W elements, 512 KiB of
// float32 at 64x64). 32 channels (two cache lines of float32 a row) against 16: forward 1.9-3.1
// -> 1.3-1.5 ms at (4, 128, 64, 64), 0.56-0.61 -> 0.42 at (2, 32, 128, 128), backward 4.1-4.5
// -> 3.4-3.6 and 1.03-1.12 -> 0.73-0.75, (8, 512, 8, 8) backward 0.21 -> 0.23 (one thread,
// best of 5 medians, three alternating runs); 64 wastes half of every row at 32 channels.
constexpr int64_t kBlockChannels = 32;

inline bool channels_innermost(const PlaneView& v) {
  return v.c_stride == 1 && v.hw_stride != 1;
}

// The partial sums of grad_noise each sample's backward tasks write (N, this, H*W).
inline int64_t grad_noise_partials(const PlaneView& xv, int64_t C, int64_t M) {
  return channels_innermost(xv) ? (C + kBlockChannels - 1) / kBlockChannels : backward_tasks(C, M, true).per_sample;
}

template <typename acc_t>
using Row = std::array<Vectorized<acc_t>, kBlockChannels / Vectorized<acc_t>::size()>;

template <typename acc_t>
Row<acc_t> filled_row(acc_t value) {
  Row<acc_t> row;
  row.fill(Vectorized<acc_t>(value));
  return row;
}

// Lanes [0, count) of the vector at p, the others 0, and the store of those lanes, for any count:
// a row's k-th vector holds count - k * size() of its channels, past size() or below 1. ATen's
// partial loadu and store copy count elements with memcpy in its portable code (any torch) and in
// torch 2.11's AVX2 code (2.14's masks them), so a count outside [1, size()] must not reach them: it
// overran their buffer (a segfault in the channels_last generator test on torch 2.11).
template <typename acc_t>
C10_ALWAYS_INLINE Vectorized<acc_t> load_lanes(const acc_t* p, int64_t count) {
  using Vec = Vectorized<acc_t>;
  if (count >= Vec::size()) return Vec::loadu(p);
  return count > 0 ? Vec::loadu(p, count) : Vec(acc_t(0));
}

template <typename acc_t>
C10_ALWAYS_INLINE void store_lanes(const Vectorized<acc_t>& v, acc_t* p, int64_t count) {
  if (count >= Vectorized<acc_t>::size()) {
    v.store(p);
  } else if (count > 0) {
    v.store(p, count);
  }
}

// count <= kBlockChannels channels from p, stride apart, as op-math vectors; missing lanes are 0.
// load_row and store_row run once a pixel: always inlined (left to GCC, store_row became a call
// in the backward, 25% slower at 8x8 planes).
template <typename acc_t, typename scalar_t>
C10_ALWAYS_INLINE Row<acc_t> load_row(const scalar_t* p, int64_t stride, int64_t count) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t L = Vec::size();
  Row<acc_t> row;
  if (in_place<scalar_t, acc_t>(stride)) {
    const acc_t* in = reinterpret_cast<const acc_t*>(p);
    for (int64_t k = 0; k < int64_t(row.size()); ++k) row[k] = load_lanes(in + k * L, count - k * L);
    return row;
  }
  acc_t values[kBlockChannels] = {};
  for (int64_t c = 0; c < count; ++c) values[c] = acc_t(p[c * stride]);
  for (size_t k = 0; k < row.size(); ++k) row[k] = Vec::loadu(values + k * L);
  return row;
}

// The first count lanes of row, to p, stride apart.
template <typename acc_t, typename scalar_t>
C10_ALWAYS_INLINE void store_row(const Row<acc_t>& row, int64_t count, scalar_t* p, int64_t stride) {
  constexpr int64_t L = Vectorized<acc_t>::size();
  if (in_place<scalar_t, acc_t>(stride)) {
    acc_t* out = reinterpret_cast<acc_t*>(p);
    for (int64_t k = 0; k < int64_t(row.size()); ++k) store_lanes(row[k], out + k * L, count - k * L);
    return;
  }
  acc_t values[kBlockChannels];
  for (size_t k = 0; k < row.size(); ++k) row[k].store(values + k * L);
  for (int64_t c = 0; c < count; ++c) p[c * stride] = scalar_t(values[c]);
}

// Row v = x + a * noise of one pixel: count channels from x_row, noise the pixel's noise value
// (null: no noise).
template <typename acc_t, typename scalar_t>
C10_ALWAYS_INLINE Row<acc_t> load_v_row(const scalar_t* x_row, int64_t count, const Row<acc_t>& a,
                                        const scalar_t* noise) {
  Row<acc_t> v = load_row<acc_t>(x_row, 1, count);
  if (noise != nullptr) {
    const Vectorized<acc_t> noise_v = Vectorized<acc_t>(acc_t(*noise));
    for (size_t k = 0; k < v.size(); ++k) v[k] = v[k] + a[k] * noise_v;
  }
  return v;
}

// Lane-wise sums of rows: float lanes for up to kFlushEvery rows, then flushed into double lanes,
// as VecSum does for a single sum.
template <typename acc_t>
class RowSum {
 public:
  void add(const Row<acc_t>& row) {
    for (size_t k = 0; k < row.size(); ++k) lanes_[k] += row[k];
    if (++pending_ == kFlushEvery) flush();
  }
  // Each lane's total divided by `divisor` (in double), as op-math vectors.
  Row<acc_t> totals(double divisor = 1) {
    flush();
    acc_t values[kBlockChannels];
    for (int64_t c = 0; c < kBlockChannels; ++c) values[c] = acc_t(totals_[c] / divisor);
    Row<acc_t> row;
    for (size_t k = 0; k < row.size(); ++k) row[k] = Vectorized<acc_t>::loadu(values + k * Vectorized<acc_t>::size());
    return row;
  }

 private:
  static constexpr int kFlushEvery = 64;
  void flush() {
    acc_t values[kBlockChannels];
    for (size_t k = 0; k < lanes_.size(); ++k) {
      lanes_[k].store(values + k * Vectorized<acc_t>::size());
      lanes_[k] = Vectorized<acc_t>(acc_t(0));
    }
    for (int64_t c = 0; c < kBlockChannels; ++c) totals_[c] += values[c];
    pending_ = 0;
  }
  Row<acc_t> lanes_ = filled_row(acc_t(0));
  double totals_[kBlockChannels] = {};
  int pending_ = 0;
};

// Calls body(task, n, c0, count) for every block of count <= kBlockChannels channels from c0 of a
// sample n (task: its index, n * blocks + c0 / kBlockChannels), in parallel, grain_elements
// elements a chunk.
template <typename Body>
void for_each_channel_block(int64_t N, int64_t C, int64_t M, int64_t grain_elements, const Body& body) {
  const int64_t blocks = (C + kBlockChannels - 1) / kBlockChannels;
  at::parallel_for(0, N * blocks, std::max<int64_t>(1, grain_elements / (kBlockChannels * M)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t task = begin; task < end; ++task) {
                       const int64_t c0 = task % blocks * kBlockChannels;
                       body(task, task / blocks, c0, std::min(kBlockChannels, C - c0));
                     }
                   });
}

template <typename scalar_t>
void ForwardPass<scalar_t>::by_channel_blocks() const {
  const auto [N, C, M, xv, yv, nv, x_ptr, noise_ptr, a_ptr, scale_ptr, bias_ptr, y_ptr, mean_ptr, rstd_ptr, eps,
              negative_slope] = *this;
  using Vec = Vectorized<acc_t>;
  using R = Row<acc_t>;
  const Vec slope_v = Vec(acc_t(negative_slope));
  for_each_channel_block(N, C, M, 32768, [&](int64_t, int64_t n, int64_t c0, int64_t count) {
    const scalar_t* xs = x_ptr + n * xv.n_stride + c0;
    const scalar_t* nz = noise_ptr != nullptr ? noise_ptr + n * nv.n_stride : nullptr;
    const R a = load_row<acc_t>(a_ptr + c0, 1, count);
    const auto v_at = [&](int64_t p) {
      return load_v_row(xs + p * xv.hw_stride, count, a, nz != nullptr ? nz + p * nv.hw_stride : nullptr);
    };
    // corrected_moments, lane by lane: m from deviations from the first pixel, then the deviations from m.
    const R first = v_at(0);
    RowSum<acc_t> first_deviations, deviations, squares;
    for (int64_t p = 0; p < M; ++p) {
      R v = v_at(p);
      for (size_t k = 0; k < v.size(); ++k) v[k] = v[k] - first[k];
      first_deviations.add(v);
    }
    R m = first_deviations.totals(double(M));
    for (size_t k = 0; k < m.size(); ++k) m[k] = first[k] + m[k];
    for (int64_t p = 0; p < M; ++p) {
      R d = v_at(p), d2;
      for (size_t k = 0; k < d.size(); ++k) {
        d[k] = d[k] - m[k];
        d2[k] = d[k] * d[k];
      }
      deviations.add(d);
      squares.add(d2);
    }
    const R sum = deviations.totals(), square_sum = squares.totals();
    const R scale = load_row<acc_t>(scale_ptr + n * C + c0, 1, count);
    const R bias = load_row<acc_t>(bias_ptr + n * C + c0, 1, count);
    R mean, rstd, gamma;
    for (size_t k = 0; k < rstd.size(); ++k) {
      Vec variance;
      corrected_moments(mean[k], variance, m[k], sum[k], square_sum[k], Vec(acc_t(M)));
      rstd[k] = rstd_of(variance, acc_t(eps));
      gamma[k] = scale[k] * rstd[k];
    }
    store_row(mean, count, mean_ptr + n * C + c0, 1);
    store_row(rstd, count, rstd_ptr + n * C + c0, 1);
    scalar_t* ys = y_ptr + n * yv.n_stride + c0 * yv.c_stride;
    for (int64_t p = 0; p < M; ++p) {
      R v = v_at(p);
      for (size_t k = 0; k < v.size(); ++k) v[k] = leaky_relu((v[k] - mean[k]) * gamma[k] + bias[k], slope_v);
      store_row(v, count, ys + p * yv.hw_stride, yv.c_stride);
    }
  });
}

// The math of by_planes by blocks of channels; a task's grad_noise partial is the block's
// Σ_c a_c dv_c per pixel, reduced across the lanes.
template <typename scalar_t>
void BackwardPass<scalar_t>::by_channel_blocks() const {
  const auto [N, C, M, xv, gyv, gxv, nv, x_ptr, gy_ptr, noise_ptr, a_ptr, scale_ptr, bias_ptr, mean_ptr, rstd_ptr,
              gx_ptr, gn_ptr, ga_ptr, gscale_ptr, gbias_ptr, negative_slope] = *this;
  using Vec = Vectorized<acc_t>;
  using R = Row<acc_t>;
  const Vec slope_v = Vec(acc_t(negative_slope));
  for_each_channel_block(N, C, M, 16384, [&](int64_t task, int64_t n, int64_t c0, int64_t count) {
    const int64_t nc = n * C + c0;
    const scalar_t* xs = x_ptr + n * xv.n_stride + c0;
    const scalar_t* dys = gy_ptr + n * gyv.n_stride + c0 * gyv.c_stride;
    const scalar_t* nz = noise_ptr != nullptr ? noise_ptr + n * nv.n_stride : nullptr;
    const R a = load_row<acc_t>(a_ptr + c0, 1, count);
    const R mean = load_row<acc_t>(mean_ptr + nc, 1, count), rstd = load_row<acc_t>(rstd_ptr + nc, 1, count);
    const R gamma = load_row<acc_t>(scale_ptr + nc, 1, count), beta = load_row<acc_t>(bias_ptr + nc, 1, count);
    // x̂ and g at pixel p, recomputed in each sweep as in by_planes.
    const auto xhat_and_g = [&](int64_t p, R& xh, R& g) {
      xh = load_v_row(xs + p * xv.hw_stride, count, a, nz != nullptr ? nz + p * nv.hw_stride : nullptr);
      g = load_row<acc_t>(dys + p * gyv.hw_stride, gyv.c_stride, count);
      for (size_t k = 0; k < xh.size(); ++k) {
        xh[k] = (xh[k] - mean[k]) * rstd[k];
        g[k] = leaky_relu_grad(g[k], xh[k], gamma[k], beta[k], slope_v);
      }
    };
    RowSum<acc_t> sum_g, sum_g_xhat, dv_dot_noise;
    R xh, g;
    for (int64_t p = 0; p < M; ++p) {
      xhat_and_g(p, xh, g);
      sum_g.add(g);
      R g_xhat;
      for (size_t k = 0; k < xh.size(); ++k) g_xhat[k] = g[k] * xh[k];
      sum_g_xhat.add(g_xhat);
    }
    const R mean_g = sum_g.totals(double(M)), mean_g_xhat = sum_g_xhat.totals(double(M));
    acc_t* grad_noise_sum = gn_ptr != nullptr ? gn_ptr + task * M : nullptr;
    scalar_t* dxs = gx_ptr + n * gxv.n_stride + c0 * gxv.c_stride;
    for (int64_t p = 0; p < M; ++p) {
      xhat_and_g(p, xh, g);
      R dv;  // dv = gamma * rstd * (g - mean(g) - x̂ mean(g x̂))
      for (size_t k = 0; k < dv.size(); ++k) dv[k] = gamma[k] * rstd[k] * (g[k] - mean_g[k] - xh[k] * mean_g_xhat[k]);
      store_row(dv, count, dxs + p * gxv.hw_stride, gxv.c_stride);
      if (nz != nullptr) {
        const Vec noise_p = Vec(acc_t(nz[p * nv.hw_stride]));
        R dv_noise;
        for (size_t k = 0; k < dv.size(); ++k) dv_noise[k] = dv[k] * noise_p;
        dv_dot_noise.add(dv_noise);
      }
      if (grad_noise_sum != nullptr) {
        Vec scaled = a[0] * dv[0];
        for (size_t k = 1; k < dv.size(); ++k) scaled = scaled + a[k] * dv[k];
        grad_noise_sum[p] = at::vec::vec_reduce_all<acc_t>([](auto l, auto r) { return l + r; }, scaled);
      }
    }
    store_row(dv_dot_noise.totals(), count, ga_ptr + nc, 1);
    store_row(sum_g_xhat.totals(), count, gscale_ptr + nc, 1);
    store_row(sum_g.totals(), count, gbias_ptr + nc, 1);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> noise_adain_lrelu_cpu(
    const at::Tensor& x_in, const std::optional<at::Tensor>& noise_in, const at::Tensor& noise_weight,
    const at::Tensor& style_scale, const at::Tensor& style_bias, double eps, double negative_slope) {
  check_noise_adain_lrelu_args(x_in, noise_in, noise_weight, style_scale, style_bias);
  const at::Tensor x = with_collapsible_hw(x_in);
  const std::optional<at::Tensor> noise = with_collapsible_hw(noise_in);
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(output_memory_format(x_in)));
  const auto stats_options = x.options().dtype(stats_dtype(x.scalar_type()));
  at::Tensor mean = at::empty({x.size(0), x.size(1)}, stats_options);
  at::Tensor rstd = at::empty({x.size(0), x.size(1)}, stats_options);
  const at::Tensor a = noise_weight.contiguous(), scale = style_scale.contiguous(), bias = style_bias.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "noise_adain_lrelu_cpu", [&] {
    const ForwardPass<scalar_t> pass(x, noise, a, scale, bias, eps, negative_slope, y, mean, rstd);
    if (channels_innermost(pass.xv)) {
      pass.by_channel_blocks();
    } else {
      pass.by_planes();
    }
  });
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> noise_adain_lrelu_backward_cpu(
    const at::Tensor& grad_y_in, const at::Tensor& x_in, const std::optional<at::Tensor>& noise_in,
    const at::Tensor& noise_weight, const at::Tensor& style_scale, const at::Tensor& style_bias,
    const at::Tensor& mean, const at::Tensor& rstd, double negative_slope, bool compute_grad_noise) {
  check_noise_adain_lrelu_backward_args(grad_y_in, x_in, noise_in, noise_weight, style_scale, style_bias, mean, rstd,
                                        compute_grad_noise);
  // With channels innermost in x, the kernels read dy by rows of channels too: a dy with its channels
  // apart (NCHW) is copied into channels_last first, which beats reading it an element per cache line
  // (the backward op, one thread, float32, channels_last x with NCHW dy, four alternating runs:
  // 0.57-0.60 -> 0.38-0.45 ms at (8, 512, 8, 8), 11.1-11.3 -> 9.3-10.2 at (4, 128, 64, 64), 5.5-5.7
  // -> 3.0-4.1 at (2, 32, 128, 128); matched layouts take 0.21-0.24, 3.5-4.6 and 0.65-1.05). The
  // other way round, the planes kernels' gather of a channels_last dy was no slower than such a
  // copy (0.60 against 0.66 ms, 5.2 against 5.4-5.8, 1.7 against 1.8-1.9), so that dy is read where it lies.
  const at::Tensor x = with_collapsible_hw(x_in);
  const at::Tensor grad_y = with_collapsible_hw(
      channels_innermost(plane_view(x)) && !channels_innermost(plane_view(grad_y_in))
          ? grad_y_in.contiguous(at::MemoryFormat::ChannelsLast)
          : grad_y_in);
  const std::optional<at::Tensor> noise = with_collapsible_hw(noise_in);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor grad_x = at::empty(x.sizes(), x.options().memory_format(output_memory_format(x_in)));
  at::Tensor grad_a_per_plane = at::empty(style_scale.sizes(), mean.options());
  at::Tensor grad_scale = at::empty(style_scale.sizes(), x.options());
  at::Tensor grad_bias = at::empty(style_scale.sizes(), x.options());
  at::Tensor grad_noise_partial;  // every task's, (N, tasks per sample, H*W), summed over the tasks below
  if (compute_grad_noise) {
    grad_noise_partial = at::empty({N, grad_noise_partials(plane_view(x), C, H * W), H * W}, mean.options());
  }
  const at::Tensor a = noise_weight.contiguous(), scale = style_scale.contiguous(), bias = style_bias.contiguous();
  const at::Tensor mean_c = mean.contiguous(), rstd_c = rstd.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "noise_adain_lrelu_backward_cpu", [&] {
    const BackwardPass<scalar_t> pass(grad_y, x, noise, a, scale, bias, mean_c, rstd_c, negative_slope, grad_x,
                                      compute_grad_noise ? &grad_noise_partial : nullptr, grad_a_per_plane,
                                      grad_scale, grad_bias);
    if (channels_innermost(pass.xv)) {
      pass.by_channel_blocks();
    } else {
      pass.by_planes();
    }
  });
  // The partials (per plane, per task) summed in a fixed order keep it deterministic.
  const at::Tensor grad_noise = compute_grad_noise
                                    ? grad_noise_partial.sum(1).to(x.scalar_type()).view({N, 1, H, W})
                                    : at::empty({0}, x.options());
  at::Tensor grad_noise_weight = grad_a_per_plane.sum(0).to(x.scalar_type());
  return {grad_x, grad_noise, grad_noise_weight, grad_scale, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(stylegan_ops, CPU, m) {
  m.impl("noise_adain_lrelu", &noise_adain_lrelu_cpu);
  m.impl("noise_adain_lrelu_backward", &noise_adain_lrelu_backward_cpu);
}

}  // namespace stylegan_ops

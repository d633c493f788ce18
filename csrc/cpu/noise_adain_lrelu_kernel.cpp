// noise_adain_lrelu on CPU: at::parallel_for over (n, c) planes, small planes in groups (planes_per_group).
//
// Each plane of x + a * noise is gathered once (any layout, any floating dtype) into a contiguous
// buffer in the op-math type (float for half/bfloat16/float, double for double); statistics and
// the output are then computed from that buffer with at::vec::Vectorized. Planes of y, dy, dx and
// noise that are already contiguous in the op-math type are read and written in place. Variance is
// two-pass (sum of squared deviations from the mean) and the mean sums deviations from the
// plane's first value, so a large common offset keeps its variance; sums go through float
// chunks flushed into double.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
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

// Σ over [0, M) of a term given per vector (vec_term(i) covers i .. i+L-1) and per element for the tail,
// in two independent sums so that consecutive vector adds do not wait on each other.
template <typename acc_t, typename VecTerm, typename ScalarTerm>
VecSum<acc_t> chunked_sum(int64_t M, const VecTerm& vec_term, const ScalarTerm& scalar_term) {
  constexpr int64_t L = Vectorized<acc_t>::size();
  VecSum<acc_t> even, odd;
  int64_t i = 0;
  for (; i + 2 * L <= M; i += 2 * L) {
    even.add(vec_term(i));
    odd.add(vec_term(i + L));
  }
  if (i + L <= M) {
    even.add(vec_term(i));
    i += L;
  }
  for (; i < M; ++i) odd.add(scalar_term(i));
  even.merge(odd);
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

// A plane in the op-math type, contiguous: the plane itself where it already is, else gathered
// (converted) into buf.
template <typename scalar_t, typename acc_t>
const acc_t* contiguous_plane(const scalar_t* plane, int64_t hw, int64_t M, acc_t* buf) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (hw == 1) return plane;
  }
  with_unit_stride(hw, [&](auto s) {
    for (int64_t i = 0; i < M; ++i) buf[i] = acc_t(plane[i * s]);
  });
  return buf;
}

// out[i * out_hw] = f(in[i]...) over one plane (f on vectors, one or two inputs). Returns where the
// values stand contiguous in the op-math type: out itself when it is so (written directly, one pass
// over buf fewer), else buf, from which a converting store wrote out.
template <typename scalar_t, typename acc_t, typename F, typename... In>
const acc_t* write_plane(const F& f, acc_t* buf, int64_t M, scalar_t* out, int64_t out_hw, const In*... in) {
  const auto apply = [&](acc_t* dst) {
    if constexpr (sizeof...(In) == 1) {
      at::vec::map(f, dst, in..., M);
    } else {
      at::vec::map2(f, dst, in..., M);
    }
  };
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (out_hw == 1) {
      apply(out);
      return out;
    }
  }
  apply(buf);
  with_unit_stride(out_hw, [&](auto os) {
    for (int64_t i = 0; i < M; ++i) out[i * os] = scalar_t(buf[i]);
  });
  return buf;
}

// Mean and rstd = 1 / sqrt(biased variance + eps), 0 where both are 0, of count <=
// Vectorized<acc_t>::size() planes of M elements stored back to back in v. Two-pass variance
// (squared deviations from the mean); the mean sums deviations from each plane's first value, so
// a large common offset never enters a float sum (nor a lane reduction).
template <typename acc_t>
void group_statistics(const acc_t* v, int64_t M, int64_t count, acc_t eps, acc_t* mean_out, acc_t* rstd_out) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t L = Vec::size();
  VecSum<acc_t> sums[L];
  acc_t pivot[L] = {};
  for (int64_t p = 0; p < count; ++p) {
    const acc_t* vp = v + p * M;
    const acc_t first = pivot[p] = vp[0];
    const Vec first_vec(first);
    sums[p] = chunked_sum<acc_t>(
        M, [&](int64_t i) { return Vec::loadu(vp + i) - first_vec; }, [&](int64_t i) { return vp[i] - first; });
  }
  (Vec::loadu(pivot) + VecSum<acc_t>::totals(sums, count) / Vec(acc_t(M))).store(mean_out, count);
  for (int64_t p = 0; p < count; ++p) {
    const acc_t* vp = v + p * M;
    const acc_t m = mean_out[p];
    const Vec m_vec(m);
    sums[p] = chunked_sum<acc_t>(
        M,
        [&](int64_t i) {
          const Vec d = Vec::loadu(vp + i) - m_vec;
          return d * d;
        },
        [&](int64_t i) { return (vp[i] - m) * (vp[i] - m); });
  }
  const Vec variance = VecSum<acc_t>::totals(sums, count) / Vec(acc_t(M));
  Vec rstd = Vec(acc_t(1)) / (variance + Vec(eps)).sqrt();
  // As PyTorch's batch_norm (so instance_norm): with eps = 0 a constant plane normalises to 0, not 0 / 0.
  if (eps == acc_t(0)) rstd = Vec::blendv(rstd, Vec(acc_t(0)), variance == Vec(acc_t(0)));
  rstd.store(rstd_out, count);
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

template <typename scalar_t>
void forward_kernel(const at::Tensor& x, const std::optional<at::Tensor>& noise, const at::Tensor& noise_weight,
                    const at::Tensor& style_scale, const at::Tensor& style_bias, double eps, double negative_slope,
                    at::Tensor& y, at::Tensor& mean_out, at::Tensor& rstd_out) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  const int64_t N = x.size(0), C = x.size(1), M = x.size(2) * x.size(3);
  const PlaneView xv = plane_view(x), yv = plane_view(y);
  const PlaneView nv = noise ? plane_view(*noise) : PlaneView{0, 0, 0};
  const scalar_t* x_ptr = x.const_data_ptr<scalar_t>();
  const scalar_t* noise_ptr = noise ? noise->const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* a_ptr = noise_weight.const_data_ptr<scalar_t>();
  const scalar_t* scale_ptr = style_scale.const_data_ptr<scalar_t>();
  const scalar_t* bias_ptr = style_bias.const_data_ptr<scalar_t>();
  scalar_t* y_ptr = y.mutable_data_ptr<scalar_t>();
  acc_t* mean_ptr = mean_out.mutable_data_ptr<acc_t>();
  acc_t* rstd_ptr = rstd_out.mutable_data_ptr<acc_t>();
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
        write_plane([&](Vec x) { return leaky_relu((x - mean_v) * gamma_v + beta_v, slope_v); }, vp, M,
                    y_ptr + n * yv.n_stride + c * yv.c_stride, yv.hw_stride, vp);
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

// partial[i] = a * dv[i] (first) or partial[i] += a * dv[i]: one channel's share of grad_noise.
template <typename acc_t>
void add_scaled_plane(acc_t* partial, acc_t a, const acc_t* dv, int64_t M, bool first) {
  using Vec = Vectorized<acc_t>;
  const Vec a_vec(a);
  if (first) {
    at::vec::map([&](Vec d) { return a_vec * d; }, partial, dv, M);
  } else {
    at::vec::map2([&](Vec p, Vec d) { return p + a_vec * d; }, partial, partial, dv, M);
  }
}

// grad_noise_partial, when not null, is (N, tasks per sample, M): each task's Σ_c a_c dv_c.
template <typename scalar_t>
void backward_kernel(const at::Tensor& grad_y, const at::Tensor& x, const std::optional<at::Tensor>& noise,
                     const at::Tensor& noise_weight, const at::Tensor& style_scale, const at::Tensor& style_bias,
                     const at::Tensor& mean_in, const at::Tensor& rstd_in, double negative_slope, at::Tensor& grad_x,
                     at::Tensor* grad_noise_partial, at::Tensor& grad_noise_weight_per_plane, at::Tensor& grad_scale,
                     at::Tensor& grad_bias) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  const int64_t N = x.size(0), C = x.size(1), M = x.size(2) * x.size(3);
  const PlaneView xv = plane_view(x), gyv = plane_view(grad_y), gxv = plane_view(grad_x);
  const PlaneView nv = noise ? plane_view(*noise) : PlaneView{0, 0, 0};
  const scalar_t* x_ptr = x.const_data_ptr<scalar_t>();
  const scalar_t* gy_ptr = grad_y.const_data_ptr<scalar_t>();
  const scalar_t* noise_ptr = noise ? noise->const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* a_ptr = noise_weight.const_data_ptr<scalar_t>();
  const scalar_t* scale_ptr = style_scale.const_data_ptr<scalar_t>();
  const scalar_t* bias_ptr = style_bias.const_data_ptr<scalar_t>();
  const acc_t* mean_ptr = mean_in.const_data_ptr<acc_t>();
  const acc_t* rstd_ptr = rstd_in.const_data_ptr<acc_t>();
  scalar_t* gx_ptr = grad_x.mutable_data_ptr<scalar_t>();
  acc_t* gn_ptr = grad_noise_partial != nullptr ? grad_noise_partial->mutable_data_ptr<acc_t>() : nullptr;
  acc_t* ga_ptr = grad_noise_weight_per_plane.mutable_data_ptr<acc_t>();
  scalar_t* gscale_ptr = grad_scale.mutable_data_ptr<scalar_t>();
  scalar_t* gbias_ptr = grad_bias.mutable_data_ptr<scalar_t>();
  const Vec slope_v = Vec(acc_t(negative_slope));

  const int64_t group = planes_per_group<acc_t>(M);
  // Planes [begin, end) of sample n, a group at a time (xhat and g: buffers of `group` planes); with
  // grad_noise, Σ_c a_c dv_c over them into grad_noise_sum (M elements).
  const auto backward_planes = [&](int64_t n, int64_t begin, int64_t end, acc_t* grad_noise_sum, acc_t* xhat,
                                   acc_t* g) {
    acc_t sum_g[Vec::size()], sum_g_xhat[Vec::size()];
    for (int64_t first = begin; first < end; first += group) {
      const int64_t last = std::min(first + group, end);
      for (int64_t plane = first; plane < last; ++plane) {  // the group's sums, back to back
        const int64_t c = plane % C, slot = plane - first;
        acc_t* xh_p = xhat + slot * M;
        acc_t* g_p = g + slot * M;
        gather_plane(x_ptr + n * xv.n_stride + c * xv.c_stride, xv.hw_stride,
                     noise_ptr ? noise_ptr + n * nv.n_stride : nullptr, nv.hw_stride, acc_t(a_ptr[c]), M, xh_p);
        const acc_t mean = mean_ptr[plane], rstd = rstd_ptr[plane];
        const acc_t gamma = acc_t(scale_ptr[plane]), beta = acc_t(bias_ptr[plane]);
        const acc_t* dy = contiguous_plane(gy_ptr + n * gyv.n_stride + c * gyv.c_stride, gyv.hw_stride, M, g_p);
        // One sweep: x̂ in place, g (the gradient through the LeakyReLU) into its buffer, and Σg, Σg·x̂.
        const Vec mean_v(mean), rstd_v(rstd), gamma_v(gamma), beta_v(beta);
        VecSum<acc_t> sum_g_acc, sum_g_xhat_acc;
        int64_t i = 0;
        for (; i + Vec::size() <= M; i += Vec::size()) {
          const Vec xh = (Vec::loadu(xh_p + i) - mean_v) * rstd_v;
          const Vec gi = leaky_relu_grad(Vec::loadu(dy + i), xh, gamma_v, beta_v, slope_v);
          xh.store(xh_p + i);
          gi.store(g_p + i);
          sum_g_acc.add(gi);
          sum_g_xhat_acc.add(gi * xh);
        }
        for (; i < M; ++i) {
          xh_p[i] = (xh_p[i] - mean) * rstd;
          g_p[i] = gamma * xh_p[i] + beta > acc_t(0) ? dy[i] : dy[i] * acc_t(negative_slope);
          sum_g_acc.add(g_p[i]);
          sum_g_xhat_acc.add(g_p[i] * xh_p[i]);
        }
        sum_g[slot] = acc_t(sum_g_acc.total());
        sum_g_xhat[slot] = acc_t(sum_g_xhat_acc.total());
      }
      for (int64_t plane = first; plane < last; ++plane) {
        const int64_t c = plane % C, slot = plane - first;
        acc_t* xh_p = xhat + slot * M;
        acc_t* g_p = g + slot * M;
        // dv = gamma * rstd * (g - mean(g) - xhat * mean(g * xhat)), written to dx.
        const acc_t k = acc_t(scale_ptr[plane]) * rstd_ptr[plane];
        const Vec k_vec(k), mean_g_vec(sum_g[slot] / M), mean_g_xhat_vec(sum_g_xhat[slot] / M);
        const acc_t* dv = write_plane(
            [&](Vec gi, Vec xh) { return k_vec * (gi - mean_g_vec - xh * mean_g_xhat_vec); }, g_p, M,
            gx_ptr + n * gxv.n_stride + c * gxv.c_stride, gxv.hw_stride, g_p, xh_p);
        if (grad_noise_sum != nullptr) add_scaled_plane(grad_noise_sum, acc_t(a_ptr[c]), dv, M, plane == begin);
        double dv_dot_noise = 0;
        if (noise_ptr != nullptr) {  // x̂ is spent: its buffer may take the noise plane
          const acc_t* nz = contiguous_plane(noise_ptr + n * nv.n_stride, nv.hw_stride, M, xh_p);
          dv_dot_noise = chunked_sum<acc_t>(
              M, [&](int64_t j) { return Vec::loadu(dv + j) * Vec::loadu(nz + j); },
              [&](int64_t j) { return dv[j] * nz[j]; }).total();
        }
        ga_ptr[plane] = acc_t(dv_dot_noise);
        gscale_ptr[plane] = scalar_t(sum_g_xhat[slot]);
        gbias_ptr[plane] = scalar_t(sum_g[slot]);
      }
    }
  };
  const BackwardTasks tasks = backward_tasks(C, M, grad_noise_partial != nullptr);
  const int64_t grain = std::max<int64_t>(1, 16384 / (tasks.channels * M));
  at::parallel_for(0, N * tasks.per_sample, grain, [&](int64_t task_begin, int64_t task_end) {
    std::vector<acc_t> xhat(group * M), g(group * M);
    for (int64_t task = task_begin; task < task_end; ++task) {
      const int64_t n = task / tasks.per_sample, c_begin = task % tasks.per_sample * tasks.channels;
      backward_planes(n, n * C + c_begin, n * C + std::min(C, c_begin + tasks.channels),
                      gn_ptr != nullptr ? gn_ptr + task * M : nullptr, xhat.data(), g.data());
    }
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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "noise_adain_lrelu_cpu", [&] {
    forward_kernel<scalar_t>(x, noise, noise_weight.contiguous(), style_scale.contiguous(), style_bias.contiguous(),
                             eps, negative_slope, y, mean, rstd);
  });
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> noise_adain_lrelu_backward_cpu(
    const at::Tensor& grad_y_in, const at::Tensor& x_in, const std::optional<at::Tensor>& noise_in,
    const at::Tensor& noise_weight, const at::Tensor& style_scale, const at::Tensor& style_bias,
    const at::Tensor& mean, const at::Tensor& rstd, double negative_slope, bool compute_grad_noise) {
  check_noise_adain_lrelu_backward_args(grad_y_in, x_in, noise_in, noise_weight, style_scale, style_bias, mean, rstd,
                                        compute_grad_noise);
  const at::Tensor x = with_collapsible_hw(x_in), grad_y = with_collapsible_hw(grad_y_in);
  const std::optional<at::Tensor> noise = with_collapsible_hw(noise_in);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor grad_x = at::empty(x.sizes(), x.options().memory_format(output_memory_format(x_in)));
  at::Tensor grad_a_per_plane = at::empty(style_scale.sizes(), mean.options());
  at::Tensor grad_scale = at::empty(style_scale.sizes(), x.options());
  at::Tensor grad_bias = at::empty(style_scale.sizes(), x.options());
  at::Tensor grad_noise_partial;  // every task's, (N, tasks per sample, H*W), summed over the tasks below
  if (compute_grad_noise) {
    grad_noise_partial = at::empty({N, backward_tasks(C, H * W, true).per_sample, H * W}, mean.options());
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "noise_adain_lrelu_backward_cpu", [&] {
    backward_kernel<scalar_t>(grad_y, x, noise, noise_weight.contiguous(), style_scale.contiguous(),
                              style_bias.contiguous(), mean.contiguous(), rstd.contiguous(), negative_slope, grad_x,
                              compute_grad_noise ? &grad_noise_partial : nullptr, grad_a_per_plane, grad_scale,
                              grad_bias);
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

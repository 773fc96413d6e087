// The bias + activation [+ pixel norm] epilogue shared by the CPU and CUDA kernels.
//
// Same contract as the Triton launchers in kernels/bias_act.py: x, y, dy and dx are
// (N, C, *spatial), dense in NCHW or channels_last; bias (C,), r and grad_r
// (N, 1, *spatial) are float32 (float64 for float64 tensors), as is the arithmetic.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>

#include <optional>

namespace fastpgan {

// Element (n, c, p) of an (N, C, P) view lives at n * C * P + c * stride_c + p * stride_p.
struct Layout {
  int64_t N, C, P, stride_c, stride_p;
};

Layout layout_of(const at::Tensor& t);

// fastpgan.ops.Epilogue as the kernels take it: the activation is its slope for negative
// inputs (1: linear, 0: ReLU, else leaky ReLU).
struct Epilogue {
  double slope, gain;
  bool has_clamp;
  double clamp;  // forward: the clamp; backward: the |y| threshold from clamp_threshold()
  double eps;
};

template <typename acc_t>
C10_HOST_DEVICE inline acc_t activate(acc_t h, const Epilogue& e) {
  acc_t a = h > acc_t(0) ? h : h * acc_t(e.slope);
  a *= acc_t(e.gain);
  if (e.has_clamp) {
    const acc_t c = acc_t(e.clamp);
    a = a < -c ? -c : (a > c ? c : a);
  }
  return a;
}

// d activate / dh read off the output y; |y| >= limit counts as clamped.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t activation_derivative(acc_t y, acc_t limit, const Epilogue& e) {
  if (e.has_clamp && !((y < acc_t(0) ? -y : y) < limit)) return acc_t(0);
  return y > acc_t(0) ? acc_t(e.gain) : acc_t(e.gain * e.slope);
}

void bias_act_forward_cpu(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                          at::Tensor& y, const std::optional<at::Tensor>& r,
                          const Epilogue& e);
void bias_act_backward_cpu(const at::Tensor& dy, const at::Tensor& y,
                           const std::optional<at::Tensor>& r,
                           const std::optional<at::Tensor>& grad_r, at::Tensor& dx,
                           const Epilogue& e);
#ifdef FASTPGAN_WITH_CUDA
void bias_act_forward_cuda(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                           at::Tensor& y, const std::optional<at::Tensor>& r,
                           const Epilogue& e);
void bias_act_backward_cuda(const at::Tensor& dy, const at::Tensor& y,
                            const std::optional<at::Tensor>& r,
                            const std::optional<at::Tensor>& grad_r, at::Tensor& dx,
                            const Epilogue& e);
#endif

}  // namespace fastpgan

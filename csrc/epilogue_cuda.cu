// CUDA epilogue: a group of LANES threads per pixel walks the channels. NCHW uses one
// thread per pixel (neighbouring threads read neighbouring pixels of a channel row);
// channels_last uses a warp per pixel (its lanes read neighbouring channels), with the
// pixel-norm sums reduced by warp shuffles.
#include "epilogue.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace fastpgan {
namespace {

constexpr int kThreads = 256;

template <int LANES, typename acc_t>
__device__ inline acc_t group_sum(acc_t v) {
#pragma unroll
  for (int offset = LANES / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset, LANES);
  return v;
}

template <int LANES, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
forward_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ bias,
               scalar_t* __restrict__ y, acc_t* __restrict__ r, Layout L, Epilogue e) {
  const int64_t pixel = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / LANES;
  const int lane = threadIdx.x % LANES;
  if (pixel >= L.N * L.P) return;  // uniform over the group: LANES divides kThreads
  const int64_t n = pixel / L.P, p = pixel % L.P;
  const int64_t base = n * L.C * L.P + p * L.stride_p;
  auto act = [&](int64_t c) {
    const acc_t b = bias ? bias[c] : acc_t(0);
    return activate(static_cast<acc_t>(x[base + c * L.stride_c]) + b, e);
  };
  acc_t inv = acc_t(1);
  if (r) {
    acc_t sum = acc_t(0);
    for (int64_t c = lane; c < L.C; c += LANES) {
      const acc_t a = act(c);
      sum += a * a;
    }
    sum = group_sum<LANES>(sum);
    inv = acc_t(1) / sqrt(sum / acc_t(L.C) + acc_t(e.eps));
    if (lane == 0) r[pixel] = inv;
  }
  for (int64_t c = lane; c < L.C; c += LANES)
    y[base + c * L.stride_c] = static_cast<scalar_t>(act(c) * inv);
}

template <int LANES, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
backward_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ y,
                const acc_t* __restrict__ r, const acc_t* __restrict__ grad_r,
                scalar_t* __restrict__ dx, Layout L, Epilogue e) {
  const int64_t pixel = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / LANES;
  const int lane = threadIdx.x % LANES;
  if (pixel >= L.N * L.P) return;
  const int64_t n = pixel / L.P, p = pixel % L.P;
  const int64_t base = n * L.C * L.P + p * L.stride_p;
  // dx = D(y) * r * (dy - y * (q + r * grad_r / C)), q = mean over c of dy * y.
  acc_t rv = acc_t(1), q = acc_t(0);
  if (r) {
    rv = r[pixel];
    for (int64_t c = lane; c < L.C; c += LANES) {
      const int64_t i = base + c * L.stride_c;
      q += static_cast<acc_t>(dy[i]) * static_cast<acc_t>(y[i]);
    }
    q = group_sum<LANES>(q) / acc_t(L.C);
    if (grad_r) q += rv * grad_r[pixel] / acc_t(L.C);
  }
  const acc_t limit = acc_t(e.clamp) * rv;
  for (int64_t c = lane; c < L.C; c += LANES) {
    const int64_t i = base + c * L.stride_c;
    const acc_t yv = static_cast<acc_t>(y[i]);
    dx[i] = static_cast<scalar_t>(activation_derivative(yv, limit, e) * rv *
                                  (static_cast<acc_t>(dy[i]) - yv * q));
  }
}

// Runs launch(lanes constant, blocks) with a warp per pixel for channels_last.
template <typename F>
void launch_per_pixel(const Layout& L, F&& launch) {
  const int64_t pixels = L.N * L.P;
  if (L.stride_c == 1 && L.C > 1) {
    launch(std::integral_constant<int, 32>{}, (pixels * 32 + kThreads - 1) / kThreads);
  } else {
    launch(std::integral_constant<int, 1>{}, (pixels + kThreads - 1) / kThreads);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void bias_act_forward_cuda(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                           at::Tensor& y, const std::optional<at::Tensor>& r,
                           const Epilogue& e) {
  const c10::cuda::CUDAGuard guard(x.device());
  const Layout L = layout_of(x);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "bias_act_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    launch_per_pixel(L, [&](auto lanes, int64_t blocks) {
      forward_kernel<decltype(lanes)::value><<<blocks, kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), bias ? bias->const_data_ptr<acc_t>() : nullptr,
          y.mutable_data_ptr<scalar_t>(), r ? r->mutable_data_ptr<acc_t>() : nullptr, L, e);
    });
  });
}

void bias_act_backward_cuda(const at::Tensor& dy, const at::Tensor& y,
                            const std::optional<at::Tensor>& r,
                            const std::optional<at::Tensor>& grad_r, at::Tensor& dx,
                            const Epilogue& e) {
  const c10::cuda::CUDAGuard guard(y.device());
  const Layout L = layout_of(y);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(),
                                  "bias_act_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    launch_per_pixel(L, [&](auto lanes, int64_t blocks) {
      backward_kernel<decltype(lanes)::value><<<blocks, kThreads, 0, stream>>>(
          dy.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(),
          r ? r->const_data_ptr<acc_t>() : nullptr,
          grad_r ? grad_r->const_data_ptr<acc_t>() : nullptr,
          dx.mutable_data_ptr<scalar_t>(), L, e);
    });
  });
}

}  // namespace fastpgan

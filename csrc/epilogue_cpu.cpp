// CPU epilogue: blocks of pixels in parallel; within a block the loop order follows
// memory (channels outer for NCHW, pixels outer for channels_last).
#include "epilogue.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace fastpgan {
namespace {

constexpr int64_t kBlock = 64;  // pixels per task: a cache line or more of each NCHW row

// Calls f(c, i, offset) for every channel c and pixel p0 + i of sample n's block.
template <typename F>
inline void for_each_in_block(const Layout& L, int64_t n, int64_t p0, int64_t p1, F&& f) {
  const int64_t base = n * L.C * L.P;
  if (L.stride_c == 1) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t c = 0; c < L.C; ++c) f(c, p - p0, base + p * L.stride_p + c);
  } else {
    for (int64_t c = 0; c < L.C; ++c)
      for (int64_t p = p0; p < p1; ++p) f(c, p - p0, base + c * L.stride_c + p * L.stride_p);
  }
}

// Runs task(n, p0, p1) over all blocks of kBlock pixels, in parallel.
template <typename F>
inline void parallel_blocks(const Layout& L, F&& task) {
  const int64_t blocks = (L.P + kBlock - 1) / kBlock;
  at::parallel_for(0, L.N * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t n = b / blocks, p0 = (b % blocks) * kBlock;
      task(n, p0, std::min(L.P, p0 + kBlock));
    }
  });
}

template <typename scalar_t>
void forward_impl(const at::Tensor& x, const std::optional<at::Tensor>& bias, at::Tensor& y,
                  const std::optional<at::Tensor>& r, const Epilogue& e) {
  using acc_t = at::opmath_type<scalar_t>;
  const Layout L = layout_of(x);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const acc_t* bp = bias ? bias->const_data_ptr<acc_t>() : nullptr;
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  acc_t* rp = r ? r->mutable_data_ptr<acc_t>() : nullptr;
  auto act = [&](int64_t c, int64_t off) {
    const acc_t h = static_cast<acc_t>(xp[off]) + (bp ? bp[c] : acc_t(0));
    return activate(h, e);
  };
  parallel_blocks(L, [&](int64_t n, int64_t p0, int64_t p1) {
    if (!rp) {
      for_each_in_block(L, n, p0, p1, [&](int64_t c, int64_t, int64_t off) {
        yp[off] = static_cast<scalar_t>(act(c, off));
      });
      return;
    }
    acc_t inv[kBlock] = {};
    for_each_in_block(L, n, p0, p1, [&](int64_t c, int64_t i, int64_t off) {
      const acc_t a = act(c, off);
      inv[i] += a * a;
    });
    for (int64_t i = 0; i < p1 - p0; ++i) {
      inv[i] = acc_t(1) / std::sqrt(inv[i] / acc_t(L.C) + acc_t(e.eps));
      rp[n * L.P + p0 + i] = inv[i];
    }
    for_each_in_block(L, n, p0, p1, [&](int64_t c, int64_t i, int64_t off) {
      yp[off] = static_cast<scalar_t>(act(c, off) * inv[i]);
    });
  });
}

template <typename scalar_t>
void backward_impl(const at::Tensor& dy, const at::Tensor& y,
                   const std::optional<at::Tensor>& r, const std::optional<at::Tensor>& grad_r,
                   at::Tensor& dx, const Epilogue& e) {
  using acc_t = at::opmath_type<scalar_t>;
  const Layout L = layout_of(y);
  const scalar_t* gp = dy.const_data_ptr<scalar_t>();
  const scalar_t* yp = y.const_data_ptr<scalar_t>();
  const acc_t* rp = r ? r->const_data_ptr<acc_t>() : nullptr;
  const acc_t* grp = grad_r ? grad_r->const_data_ptr<acc_t>() : nullptr;
  scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
  parallel_blocks(L, [&](int64_t n, int64_t p0, int64_t p1) {
    if (!rp) {
      for_each_in_block(L, n, p0, p1, [&](int64_t, int64_t, int64_t off) {
        const acc_t yv = static_cast<acc_t>(yp[off]);
        dxp[off] = static_cast<scalar_t>(activation_derivative(yv, acc_t(e.clamp), e) *
                                         static_cast<acc_t>(gp[off]));
      });
      return;
    }
    // dx = D(y) * r * (dy - y * (q + r * grad_r / C)), q = mean over c of dy * y.
    acc_t q[kBlock] = {};
    for_each_in_block(L, n, p0, p1, [&](int64_t, int64_t i, int64_t off) {
      q[i] += static_cast<acc_t>(gp[off]) * static_cast<acc_t>(yp[off]);
    });
    for (int64_t i = 0; i < p1 - p0; ++i) {
      const int64_t pixel = n * L.P + p0 + i;
      q[i] = q[i] / acc_t(L.C) + (grp ? rp[pixel] * grp[pixel] / acc_t(L.C) : acc_t(0));
    }
    for_each_in_block(L, n, p0, p1, [&](int64_t, int64_t i, int64_t off) {
      const acc_t rv = rp[n * L.P + p0 + i];
      const acc_t yv = static_cast<acc_t>(yp[off]);
      const acc_t d = activation_derivative(yv, acc_t(e.clamp) * rv, e);
      dxp[off] = static_cast<scalar_t>(d * rv * (static_cast<acc_t>(gp[off]) - yv * q[i]));
    });
  });
}

}  // namespace

void bias_act_forward_cpu(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                          at::Tensor& y, const std::optional<at::Tensor>& r,
                          const Epilogue& e) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "bias_act_forward_cpu",
                                  [&] { forward_impl<scalar_t>(x, bias, y, r, e); });
}

void bias_act_backward_cpu(const at::Tensor& dy, const at::Tensor& y,
                           const std::optional<at::Tensor>& r,
                           const std::optional<at::Tensor>& grad_r, at::Tensor& dx,
                           const Epilogue& e) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(),
                                  "bias_act_backward_cpu",
                                  [&] { backward_impl<scalar_t>(dy, y, r, grad_r, dx, e); });
}

}  // namespace fastpgan

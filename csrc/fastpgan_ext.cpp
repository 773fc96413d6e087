// fastpgan's C++ extension: the stride-2 kernels that make nearest-upsample + conv and
// conv + average-pool one convolution each, and the bias + activation [+ pixel norm]
// epilogue.
//
// Only public ATen functions are called, so autograd differentiates the convolutions
// (to any order) and the extension survives torch upgrades.
#include <torch/extension.h>

#include "epilogue.h"

namespace fastpgan {

Layout layout_of(const at::Tensor& t) {
  const int64_t N = t.size(0), C = t.size(1);
  const int64_t P = N * C ? t.numel() / (N * C) : 0;
  // A dense 4-D tensor with channel stride 1 is channels_last (or has 1x1 maps, where
  // both layouts coincide).
  const bool channels_last = t.dim() == 4 && t.stride(1) == 1 && C > 1;
  return channels_last ? Layout{N, C, P, 1, C} : Layout{N, C, P, P, 1};
}

// (O, I, k+1, k+1): the sum of the four one-pixel shifts of the zero-padded kernel, times
// scale. Upsample-then-conv is the stride-2 transposed convolution with this kernel
// flipped, conv-then-pool the stride-2 convolution with it over 4 (TensorFlow ProGAN's
// "fused scale"). A half-precision weight's kernel is summed in float32 (the caller rounds
// it once to the activations' type): summed in bfloat16, each tap took up to four roundings
// and a pixel-normed output's error grew by up to 3.5x the plain layer's.
at::Tensor shifted_sum_kernel(const at::Tensor& weight, double scale) {
  const int64_t k1 = weight.size(2) + 1;
  const at::ScalarType sum_type = weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor w = at::constant_pad_nd(weight.to(sum_type) * scale, {1, 1, 1, 1});
  return w.narrow(2, 1, k1).narrow(3, 1, k1) + w.narrow(2, 0, k1).narrow(3, 1, k1) +
         w.narrow(2, 1, k1).narrow(3, 0, k1) + w.narrow(2, 0, k1).narrow(3, 0, k1);
}

// The stride-2 kernel that does what the resampling pair does with `weight`: for `up`, the
// transposed convolution's (I, O, k+1, k+1) kernel (shifted sum, transposed, flipped); else
// the convolution's (O, I, k+1, k+1) kernel (shifted sum over 4). `weight_gain` is folded in.
at::Tensor resample_kernel(const at::Tensor& weight, bool up, double weight_gain) {
  TORCH_CHECK(weight.dim() == 4, "resample_kernel: weight must be 4-D");
  if (up) return shifted_sum_kernel(weight, weight_gain).transpose(0, 1).flip({2, 3});
  return shifted_sum_kernel(weight, 0.25 * weight_gain);
}

namespace {

Epilogue make_epilogue(double slope, double gain, std::optional<double> clamp, double eps) {
  return Epilogue{slope, gain, clamp.has_value(), clamp.value_or(0.0), eps};
}

void check_dense(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_contiguous() || t.is_contiguous(at::MemoryFormat::ChannelsLast),
              "bias_act: ", name, " must be dense in NCHW or channels_last");
}

// Whether two dense tensors of one shape put every element at the same offset. Raw strides
// can differ where they do not: a size-1 dimension's stride is arbitrary (1x1 maps are
// NCHW and channels_last at once).
bool same_layout(const at::Tensor& a, const at::Tensor& b) {
  const Layout la = layout_of(a), lb = layout_of(b);
  return a.sizes() == b.sizes() && la.N == lb.N && la.C == lb.C && la.P == lb.P &&
         (la.C <= 1 || la.stride_c == lb.stride_c) && (la.P <= 1 || la.stride_p == lb.stride_p);
}

// float32 (float64 for float64 x): the arithmetic type, and the kernels' bias type.
at::ScalarType stat_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace

void bias_act_forward(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                      at::Tensor& y, const std::optional<at::Tensor>& r, double slope,
                      double gain, std::optional<double> clamp, double eps) {
  check_dense(x, "x");
  TORCH_CHECK(same_layout(y, x), "bias_act: y must have x's layout");
  const Epilogue e = make_epilogue(slope, gain, clamp, eps);
  // Under autocast x is bfloat16/float16 while the bias parameter stays float32.
  std::optional<at::Tensor> b;
  if (bias) b = bias->to(stat_type(x)).contiguous();
  if (x.is_cuda()) {
#ifdef FASTPGAN_WITH_CUDA
    bias_act_forward_cuda(x, b, y, r, e);
#else
    TORCH_CHECK(false, "fastpgan's extension was built without CUDA");
#endif
  } else {
    bias_act_forward_cpu(x, b, y, r, e);
  }
}

std::optional<at::Tensor> bias_act_backward(const at::Tensor& dy, const at::Tensor& y,
                                            const std::optional<at::Tensor>& r,
                                            const std::optional<at::Tensor>& grad_r,
                                            at::Tensor& dx, bool with_bias_grad, double slope,
                                            double gain, std::optional<double> clamp) {
  check_dense(y, "y");
  TORCH_CHECK(same_layout(dy, y) && same_layout(dx, y),
              "bias_act: dy and dx must have y's layout");
  const Epilogue e = make_epilogue(slope, gain, clamp, 0.0);
  if (y.is_cuda()) {
#ifdef FASTPGAN_WITH_CUDA
    bias_act_backward_cuda(dy, y, r, grad_r, dx, e);
#else
    TORCH_CHECK(false, "fastpgan's extension was built without CUDA");
#endif
  } else {
    bias_act_backward_cpu(dy, y, r, grad_r, dx, e);
  }
  if (!with_bias_grad) return std::nullopt;
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < dx.dim(); ++d) dims.push_back(d);
  return at::sum(dx, dims, /*keepdim=*/false, stat_type(y));
}

}  // namespace fastpgan

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
#ifdef FASTPGAN_WITH_CUDA
  m.attr("WITH_CUDA") = true;
#else
  m.attr("WITH_CUDA") = false;
#endif
  m.def("bias_act_forward", &fastpgan::bias_act_forward,
        "Writes y = epilogue(x) (and r, the pixel norm's inverse norm, when given)",
        py::arg("x"), py::arg("bias"), py::arg("y"), py::arg("r"), py::kw_only(),
        py::arg("slope"), py::arg("gain"), py::arg("clamp"), py::arg("eps"));
  m.def("bias_act_backward", &fastpgan::bias_act_backward,
        "Writes dx from dy and the saved y (and r); returns the bias gradient if asked",
        py::arg("dy"), py::arg("y"), py::arg("r"), py::arg("grad_r"), py::arg("dx"),
        py::kw_only(), py::arg("with_bias_grad"), py::arg("slope"), py::arg("gain"),
        py::arg("clamp"));
}

// resample_kernel is registered as an operator made of ATen calls (CompositeImplicitAutograd),
// so autograd and torch.compile see through it: torch.ops.fastpgan.resample_kernel, in the
// namespace the Python-defined ops share (hence a fragment).
TORCH_LIBRARY_FRAGMENT(fastpgan, m) {
  m.def("resample_kernel(Tensor weight, bool up, float weight_gain=1.0) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastpgan, CompositeImplicitAutograd, m) {
  m.impl("resample_kernel", &fastpgan::resample_kernel);
}

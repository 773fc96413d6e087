"""FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) from feature sets, and the
Inception Score (Salimans et al. 2016) from class probabilities, in float64."""

from __future__ import annotations

import torch
from torch import Tensor


def _check_features(name: str, features: Tensor, minimum: int) -> Tensor:
    if features.dim() != 2 or features.shape[0] < minimum:
        raise ValueError(f"{name} needs (N, D) features with N >= {minimum}, got "
                         f"{tuple(features.shape)}")
    return features.double()


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance of (N, D) features, in float64."""
    features = _check_features("feature_statistics", features, 2)
    mean = features.mean(0)
    centred = features - mean
    return mean, centred.T @ centred / (features.shape[0] - 1)


def _psd_sqrt(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mean_a: Tensor, cov_a: Tensor, mean_b: Tensor, cov_b: Tensor) -> float:
    """|mean_a - mean_b|^2 + tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2)).

    tr((A B)^(1/2)) is the sum of the square roots of the eigenvalues of A^(1/2) B A^(1/2),
    a symmetric matrix with the same spectrum as A B, so two symmetric eigendecompositions
    replace the general matrix square root (and its complex round-off) of the reference
    code.
    """
    root_a = _psd_sqrt(cov_a.double())
    middle = root_a @ cov_b.double() @ root_a
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    difference = (mean_a.double() - mean_b.double()).square().sum()
    return float(difference + cov_a.double().trace() + cov_b.double().trace() - 2 * trace_sqrt)


def frechet_inception_distance(real: Tensor, fake: Tensor) -> float:
    """FID between two (N, D) feature sets.

    With fewer samples than feature dimensions (FID during training, on a few thousand
    images of 2048 features) it is computed from the samples themselves: with
    cov_a = A A^T and cov_b = B B^T for the centred samples over sqrt(N - 1), the nonzero
    spectrum of cov_a cov_b is that of (A^T B)(A^T B)^T, so tr((cov_a cov_b)^(1/2)) is the
    sum of the singular values of A^T B (N_a x N_b), and tr(cov) is |A|^2: no D x D
    decomposition. The same value as :func:`frechet_distance` of the statistics.
    """
    real = _check_features("frechet_inception_distance", real, 2)
    fake = _check_features("frechet_inception_distance", fake, 2)
    if min(real.shape[0], fake.shape[0]) >= real.shape[1]:
        return frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    a, b = (_centred_over_root(features) for features in (real, fake))
    trace_sqrt = torch.linalg.svdvals(a @ b.T).sum()  # (A^T B) with a = A^T
    difference = (real.mean(0) - fake.mean(0)).square().sum()
    return float(difference + a.square().sum() + b.square().sum() - 2 * trace_sqrt)


def _centred_over_root(features: Tensor) -> Tensor:
    """(N, D) features minus their mean, over sqrt(N - 1): A with A^T A the covariance."""
    return (features - features.mean(0)) / (features.shape[0] - 1) ** 0.5


def kernel_inception_distance(real: Tensor, fake: Tensor, *, subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation over random subsets of the unbiased MMD^2 with the
    cubic polynomial kernel k(x, y) = (x.y / D + 1)^3 (Binkowski et al. 2018, eq. 3).

    ``subset_size`` is capped at the smaller set's size; subsets are drawn without
    replacement, seeded by ``seed``.
    """
    real = _check_features("kernel_inception_distance", real, 2)
    fake = _check_features("kernel_inception_distance", fake, 2)
    m = min(subset_size, real.shape[0], fake.shape[0])
    dim = real.shape[1]
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        x = real[torch.randperm(real.shape[0], generator=generator)[:m]]
        y = fake[torch.randperm(fake.shape[0], generator=generator)[:m]]
        k_xx = (x @ x.T / dim + 1) ** 3
        k_yy = (y @ y.T / dim + 1) ** 3
        k_xy = (x @ y.T / dim + 1) ** 3
        within = (k_xx.sum() - k_xx.trace() + k_yy.sum() - k_yy.trace()) / (m * (m - 1))
        scores.append(within - 2 * k_xy.mean())
    values = torch.stack(scores)
    return float(values.mean()), float(values.std(unbiased=False))


def inception_score(probabilities: Tensor, splits: int = 10) -> tuple[float, float]:
    """The Inception Score of (N, classes) class probabilities, and its spread: exp of the
    mean KL divergence from each image's class distribution to the split's marginal, in
    each of ``splits`` consecutive splits (image i * N // splits onwards, as NVlabs and
    torch-fidelity split), then the mean and the population standard deviation over the
    splits. 1 for images of one class distribution; at most the class count."""
    p = _check_features("the Inception Score", probabilities, splits)
    if (p < 0).any() or not torch.allclose(p.sum(1), torch.ones_like(p[:, 0]), atol=1e-3):
        raise ValueError("the Inception Score needs class probabilities (rows of non-negative "
                         "numbers summing to 1)")
    n = len(p)
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(0, keepdim=True)
        kl = torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)
        scores.append(kl.sum(1).mean().exp())
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(correction=0))

"""Metrics of generated images: the ProGAN paper's sliced Wasserstein distance (SWD), FID
and KID on Inception-v3 features and the Inception Score on its class probabilities, from
a local weights file (``fastpgan metrics`` is in :mod:`fastpgan.metrics.evaluate`)."""

from fastpgan.metrics.fid import (
    frechet_inception_distance,
    inception_score,
    kernel_inception_distance,
)
from fastpgan.metrics.inception import InceptionFeatures
from fastpgan.metrics.swd import sliced_wasserstein_distance

__all__ = ["InceptionFeatures", "frechet_inception_distance", "inception_score",
           "kernel_inception_distance", "sliced_wasserstein_distance"]

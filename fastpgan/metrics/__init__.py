"""Metrics of generated images: the ProGAN paper's sliced Wasserstein distance (SWD)."""

from fastpgan.metrics.swd import sliced_wasserstein_distance

__all__ = ["sliced_wasserstein_distance"]

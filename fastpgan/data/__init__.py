"""Datasets: the multi-resolution image cache and the loader that trains from it."""

from fastpgan.data.cache import ImageCache, build_cache, prepare_dataset
from fastpgan.data.loader import RealImages

__all__ = ["ImageCache", "RealImages", "build_cache", "prepare_dataset"]

"""fastpgan: fused GPU kernels and layers for Progressive GANs and StyleGAN-style networks.

Importing fastpgan compiles nothing and does not import Triton; the kernels are loaded
on the first fused call.
"""

from fastpgan import nn, ops
from fastpgan.backend import BACKENDS, get_backend, set_backend

__version__ = "0.1.0"

__all__ = ["BACKENDS", "__version__", "get_backend", "nn", "ops", "set_backend"]

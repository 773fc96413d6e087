"""fastpgan: fused GPU kernels and layers for Progressive GANs and StyleGAN-style networks.

Importing fastpgan compiles nothing and does not import Triton; the kernels are loaded
on the first fused call.

The package is a stack of rooms, one concern each; a module imports only from its own
room and the rooms below it (:data:`LAYERS`, lowest first; ``tests/test_structure.py``
checks every import against it):

- ``kernels`` (Triton device code and launchers) and ``csrc`` (the C++/CUDA sources);
- ``atomic`` (writing files so a crash never leaves half of one), ``files`` (the one
  room that reads files from others, by content, running nothing), ``sizes`` (image
  resolutions), ``extension`` (building and loading the C++ extension) and ``backend``
  (dispatch, and the table of every op);
- ``ops``: the ops, each a reference and a fused path under one contract;
- ``nn``: drop-in layers built on the ops;
- ``models``: the ProGAN and StyleGAN networks;
- ``data``: image caches and the training loader;
- ``runs``: what a training leaves behind and others read: checkpoints, the schedule's
  position, a run's generator loaded back, pictures, the log and its plot;
- ``metrics``: SWD, FID and KID;
- ``generate``: what one does with a trained generator;
- ``train``: the trainer; ``explore``: the generator commands as a web page;
- ``cli`` and ``doctor``: the commands.
"""

from fastpgan import nn, ops
from fastpgan.backend import BACKENDS, get_backend, set_backend

__version__ = "0.1.0"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("kernels", "csrc"),
    ("atomic", "files", "sizes", "extension", "backend"),
    ("ops",),
    ("nn",),
    ("models",),
    ("data",),
    ("runs",),
    ("metrics",),
    ("generate",),
    ("train", "explore"),
    ("cli", "doctor"),
)
"""The rooms of the package, lowest first; a room's modules import only from rooms at
or below its own."""

__all__ = ["BACKENDS", "LAYERS", "__version__", "get_backend", "nn", "ops", "set_backend"]

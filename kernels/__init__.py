"""Triton device code for fastpgan, installed as ``fastpgan.kernels``: one module per op
family, each with its ``@triton.jit`` kernels, their launchers, and the ahead-of-time
compile specifications of its kernels (``aot_specs``, read by ``python -m
fastpgan.kernels.aot``).

Importing this package imports neither Triton nor any kernel module: fastpgan imports a
module at its op's first fused call (``fastpgan.backend.kernel_module``). Whether the
kernels run compiled or in Triton's CPU interpreter is fixed when this package is first
imported, by the ``TRITON_INTERPRET`` environment variable.
"""

import os

INTERPRETED: bool = os.environ.get("TRITON_INTERPRET", "0") == "1"
"""True when the kernels were created for Triton's interpreter (TRITON_INTERPRET=1)."""

__all__ = ["INTERPRETED"]

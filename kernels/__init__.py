"""Triton device code for fastpgan, installed as ``fastpgan.kernels``.

Importing this package imports Triton but compiles nothing: kernels are compiled on
their first launch (or ahead of time by ``python -m fastpgan.kernels.aot``). Whether
they run compiled or in Triton's CPU interpreter is fixed when this package is first
imported, by the ``TRITON_INTERPRET`` environment variable.
"""

import os

INTERPRETED: bool = os.environ.get("TRITON_INTERPRET", "0") == "1"
"""True when the kernels were created for Triton's interpreter (TRITON_INTERPRET=1)."""

from . import adain, bias_act, minibatch_stddev  # noqa: E402  (INTERPRETED is above)

__all__ = ["INTERPRETED", "adain", "bias_act", "minibatch_stddev"]

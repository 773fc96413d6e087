"""C++/CUDA sources of fastpgan's extension (installed as ``fastpgan.csrc``).

They are compiled by :mod:`fastpgan.extension` on first use, or at install time with
``FASTPGAN_BUILD_EXT=1``.
"""

"""Drop-in layers built on :mod:`fastpgan.ops`.

This package imports every layer module in it and exports what each lists in its
``__all__``, so a new layer needs no line here.
"""

import importlib
import pkgutil

__all__: list[str] = []
for _module in pkgutil.iter_modules(__path__):
    _layers = importlib.import_module(f"{__name__}.{_module.name}")
    globals().update({name: getattr(_layers, name) for name in _layers.__all__})
    __all__ += _layers.__all__
__all__.sort()

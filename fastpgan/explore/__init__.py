"""``fastpgan explore``: a generator's latent space in the browser, on 127.0.0.1.

:mod:`fastpgan.explore.session` renders what each control asks for with the functions the
CLI commands call (no web code); :mod:`fastpgan.explore.app` serves it as a Starlette app
(an optional extra: ``pip install -e ".[explore]"``).
"""

from fastpgan.explore.session import Explorer, Look, Picture

__all__ = ["Explorer", "Look", "Picture"]

"""SRGAN (Ledig et al. 2017): ``models.py`` holds the networks in plain PyTorch,
``python -m examples.srgan`` trains them (``--fused``: through fastpgan.nn.fuse)."""

"""pix2pix (Isola et al. 2017): ``models.py`` holds the networks in plain PyTorch,
``python -m examples.pix2pix`` trains them (``--fused``: through fastpgan.nn.fuse)."""
